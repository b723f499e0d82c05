#!/usr/bin/env python3
"""The hand-written man pages in deploy/man match the programs' own help.

For schedd and sched-agent, the flags are those `--helpfull` lists under their main.cc (Abseil's
`--help` lists none, as the binaries are not named after main.cc); for schedctl, those of
`schedctl --help` and of every command's and subcommand's `--help`, found by walking the
"Subcommands:" lists. Every flag must be in the page, every `--flag` the page names must be a
real one, every schedctl command must have its entry, and each page's .TH must carry the
project's version (CMakeLists.txt). groff must render each page without a warning.

Usage: man_pages_test.py SOURCE_DIR, with $SCHED_BIN_DIR the build folder (binaries in bin/).
"""

import os
import re
import shutil
import subprocess
import sys

failures = []


def fail(msg):
    failures.append(msg)


def run(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def page_text(path):
    """The page's source as plain text: roff escapes for '-' and fonts undone."""
    with open(path) as f:
        text = f.read()
    text = text.replace("\\-", "-").replace("\\e", "\\")
    return re.sub(r"\\f[BIRP]", "", text)


def flags_in(text):
    return set(re.findall(r"(?<![\w-])--([a-z][a-z0-9_-]*)", text))


def absl_flags(binary, main_cc):
    """Flags `binary --helpfull` lists in the section of main_cc (e.g. server/main.cc)."""
    out = run([binary, "--helpfull"])
    m = re.search(r"Flags from \S*%s:\n(.*?)(?:\n\n|\Z)" % re.escape(main_cc), out, re.S)
    if not m:
        fail("%s --helpfull has no section for %s:\n%s" % (binary, main_cc, out[:2000]))
        return set()
    return set(re.findall(r"^    --(\w+) \(", m.group(1), re.M))


def cli11_commands(schedctl, path=()):
    """{command path: set of long option names} for schedctl and every (sub)command."""
    out = run([schedctl, *path, "--help"])
    options = set()
    section = None
    subcommands = []
    for line in out.splitlines():
        if re.match(r"^\S.*:$", line):
            section = line[:-1]
            continue
        if section == "Options":
            m = re.match(r"^  (-\S+)", line)
            if m:
                for name in m.group(1).split(","):
                    if name.startswith("--"):
                        options.add(name[2:])
        elif section == "Subcommands":
            m = re.match(r"^  (\S+)", line)
            if m:
                subcommands.append(m.group(1))
    options.discard("help")
    found = {path: options}
    for sub in subcommands:
        found.update(cli11_commands(schedctl, path + (sub,)))
    return found


def check_page(name, page, help_flags, version):
    text = page_text(page)
    for flag in sorted(help_flags - flags_in(text)):
        fail("%s: --%s is in the program's help but not in %s" % (name, flag, page))
    for flag in sorted(flags_in(text) - help_flags - {"help", "helpfull"}):
        fail("%s: %s names --%s, which the program's help does not list" % (name, page, flag))
    th = re.search(r'^\.TH .*"sched ([^"]+)"', text, re.M)
    if not th or th.group(1) != version:
        fail("%s: .TH of %s should say \"sched %s\", has %s"
             % (name, page, version, th.group(0) if th else "no .TH"))
    warnings = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True,
                              text=True).stderr
    if warnings.strip():
        fail("%s: groff warns about %s:\n%s" % (name, page, warnings))
    return text


def main():
    if len(sys.argv) != 2:
        print("usage: man_pages_test.py SOURCE_DIR", file=sys.stderr)
        return 2
    source = sys.argv[1]
    build = os.environ.get("SCHED_BIN_DIR")
    if not build:
        print("FAIL: SCHED_BIN_DIR is not set (the build folder)", file=sys.stderr)
        return 1
    if shutil.which("groff") is None:
        print("FAIL: groff not found (Debian package groff-base)", file=sys.stderr)
        return 1
    with open(os.path.join(source, "CMakeLists.txt")) as f:
        version = re.search(r"project\(\s*sched\s+VERSION\s+([0-9.]+)", f.read()).group(1)
    bindir = os.path.join(build, "bin")
    man = os.path.join(source, "deploy", "man")

    for program, main_cc in (("schedd", "server/main.cc"), ("sched-agent", "agent/main.cc")):
        flags = absl_flags(os.path.join(bindir, program), main_cc)
        if len(flags) < 10:
            fail("%s: only %d flags found in --helpfull: is the parsing still right?"
                 % (program, len(flags)))
        check_page(program, os.path.join(man, program + ".1"), flags, version)

    commands = cli11_commands(os.path.join(bindir, "schedctl"))
    if len(commands) < 15:
        fail("schedctl: only %d commands found: is the parsing still right?" % len(commands))
    all_flags = set().union(*commands.values())
    text = check_page("schedctl", os.path.join(man, "schedctl.1"), all_flags, version)
    entries = re.findall(r"^\.TP\n\.B (.*)$", text, re.M)
    for path in sorted(p for p in commands if p):
        leaf = path if not any(q[:len(path)] == path and len(q) > len(path) for q in commands) \
            else None
        if leaf and not any(e.startswith(" ".join(path)) for e in entries):
            fail("schedctl: no entry for `schedctl %s` in schedctl.1" % " ".join(path))

    if failures:
        for f in failures:
            print("FAIL: " + f, file=sys.stderr)
        return 1
    print("PASS: schedd, sched-agent and schedctl (%d commands) match their man pages"
          % (len(commands) - 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
