#include "server/core/decision.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace sched {
namespace {

constexpr double kEps = 1e-9;

bool Allowed(const DecisionRules& rules, const Candidate& c) {
  switch (rules.placement) {
    case PlacementPolicy::kLocalOnly:
      if (!c.local) return false;
      break;
    case PlacementPolicy::kCloudOnly:
      if (c.local) return false;
      break;
    default:
      break;
  }
  if (c.local) return true;  // the spot policy is about rented capacity
  if (rules.spot == SpotPolicy::kSpot) return c.spot;
  if (rules.spot == SpotPolicy::kOnDemand) return !c.spot;
  return true;
}

bool Meets(const DecisionRules& rules, const Candidate& c) { return c.finish <= rules.deadline; }

// Cheaper, then sooner done, then the user's own, then best fit, then by name.
bool Cheaper(const Candidate& a, const Candidate& b) {
  if (a.cost < b.cost - kEps) return true;
  if (b.cost < a.cost - kEps) return false;
  if (a.finish != b.finish) return a.finish < b.finish;
  if (a.local != b.local) return a.local;
  if (a.gpus_left != b.gpus_left) return a.gpus_left < b.gpus_left;
  if (a.cpu_left != b.cpu_left) return a.cpu_left < b.cpu_left;
  return a.node->record.name < b.node->record.name;
}

// Sooner done, then cheaper.
bool Sooner(const Candidate& a, const Candidate& b) {
  if (a.finish != b.finish) return a.finish < b.finish;
  return Cheaper(a, b);
}

template <typename Pred, typename Less>
int BestWhere(absl::Span<const Candidate> cs, Pred pred, Less less) {
  int best = -1;
  for (size_t i = 0; i < cs.size(); ++i) {
    if (!pred(cs[i])) continue;
    if (best < 0 || less(cs[i], cs[best])) best = static_cast<int>(i);
  }
  return best;
}

// A duration for people: whole minutes, or whole seconds under a minute.
std::string Span(absl::Duration d) {
  if (d < absl::Seconds(1)) return "0s";
  return absl::FormatDuration(
      absl::Trunc(d, d < absl::Minutes(1) ? absl::Seconds(1) : absl::Minutes(1)));
}

std::string Dollars(double d) { return absl::StrFormat("$%.2f", d); }

std::string When(absl::Time t) {
  if (t == absl::InfiniteFuture()) return "never";
  return absl::FormatTime("%Y-%m-%d %H:%M UTC", t, absl::UTCTimeZone());
}

std::string Gib(int64_t bytes) {
  return absl::StrFormat("%.0f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
}

std::string Where(const Candidate& c) {
  const Node& n = *c.node;
  const std::string& provider = n.record.caps.provider;
  if (c.local) return absl::StrCat(n.record.name, " (local)");
  if (c.rental && !n.record.rental) {
    return absl::StrCat("a new node of offer ", n.record.name, c.spot ? " (spot)" : "");
  }
  if (c.rental) {
    return absl::StrCat(n.record.name, " (", n.record.rental->provider, ", being rented)");
  }
  return absl::StrCat(n.record.name, " (", provider.empty() ? "cloud" : provider,
                      c.spot ? ", spot" : "", ")");
}

std::string PolicyReason(const DecisionRules& rules, const Candidate& c) {
  if (rules.placement == PlacementPolicy::kLocalOnly && !c.local) {
    return "placement local-only: a rented node";
  }
  if (rules.placement == PlacementPolicy::kCloudOnly && c.local) {
    return "placement cloud-only: the user's own machine";
  }
  return absl::StrCat("spot policy ", SpotPolicyName(rules.spot), ": ",
                      c.spot ? "a spot node" : "an on-demand node");
}

std::string Reason(const DecisionRules& rules, absl::Time now, const Choice& choice,
                   absl::Span<const Candidate> cs, const Candidate& c, const Resources& r) {
  const Candidate* chosen = choice.chosen >= 0 ? &cs[choice.chosen] : nullptr;
  switch (c.verdict) {
    case OptionVerdict::kChosen:
      if (c.deferred) {
        return absl::StrCat("cheaper window: start ", When(c.start), ", finish ", When(c.finish),
                            ", about ", Dollars(c.cost), " (", Dollars(c.cost_at_earliest),
                            " if started at once)");
      }
      if (c.fits_now) {
        return absl::StrCat("room now; expected to finish ", When(c.finish), " for about ",
                            Dollars(c.cost));
      }
      if (c.rental) {
        return absl::StrCat("rented: ready in about ", Span(c.start - now), ", finish ",
                            When(c.finish), ", about ", Dollars(c.cost), " with ",
                            Span(c.paid_idle), " of provisioning and idle time");
      }
      return absl::StrCat("busy; expected room in ", Span(c.start - now),
                          ", finish ", When(c.finish), ", about ", Dollars(c.cost));
    case OptionVerdict::kTooSmall:
      return WhyNeverFits(r, c.node->record.caps);
    case OptionVerdict::kPolicy:
      return PolicyReason(rules, c);
    case OptionVerdict::kBusy:
      return c.local ? "no room now, and no estimate of when"
                     : "no room now; rented capacity is not waited for";
    case OptionVerdict::kOverMaxCost:
      return absl::StrCat("about ", Dollars(c.cost), ", over its max_cost ", Dollars(rules.max_cost));
    case OptionVerdict::kOverBudget:
      return absl::StrCat("about ", Dollars(c.cost), ", more than the ", Dollars(rules.budget_room),
                          " left under the project's budget cap");
    case OptionVerdict::kMissesDeadline:
      return absl::StrCat("expected to finish ", When(c.finish), ", after the deadline ",
                          When(rules.deadline));
    case OptionVerdict::kDearer:
      return absl::StrCat("about ", Dollars(c.cost), ": ",
                          Dollars(c.cost - (chosen ? chosen->cost : 0)), " more than ",
                          chosen ? chosen->node->record.name : "the choice");
    case OptionVerdict::kLater:
      if (chosen != nullptr && chosen->waited_for && c.local && c.finish < chosen->finish) {
        return absl::StrCat("about ", Dollars(c.cost), ", finishes ", Span(chosen->finish - c.finish),
                            " sooner (", When(c.finish), "): too little to move the job from ",
                            chosen->node->record.name, ", which it waits for");
      }
      if (chosen != nullptr && chosen->waited_for && c.local && c.cost < chosen->cost) {
        return absl::StrCat("about ", Dollars(c.cost), ", but finishes later (", When(c.finish),
                            "): not worth moving the job from ", chosen->node->record.name,
                            ", which it waits for");
      }
      if (chosen != nullptr && c.finish > chosen->finish) {
        return absl::StrCat("about ", Dollars(c.cost), ", but finishes later (", When(c.finish),
                            ")");
      }
      if (chosen != nullptr && chosen->local && !c.local) {
        return absl::StrCat("about ", Dollars(c.cost), "; the user's own machine comes first");
      }
      return absl::StrCat("about ", Dollars(c.cost), "; ranked after the choice");
  }
  return "";
}

// Order of the record's options after the chosen one: the ones that could have been chosen,
// best first, then the ones ruled out, in a fixed order of reasons.
int VerdictRank(OptionVerdict v) {
  switch (v) {
    case OptionVerdict::kChosen: return 0;
    case OptionVerdict::kLater: return 1;
    case OptionVerdict::kDearer: return 2;
    case OptionVerdict::kMissesDeadline: return 3;
    case OptionVerdict::kOverBudget: return 4;
    case OptionVerdict::kOverMaxCost: return 5;
    case OptionVerdict::kBusy: return 6;
    case OptionVerdict::kPolicy: return 7;
    case OptionVerdict::kTooSmall: return 8;
  }
  return 9;
}

}  // namespace

std::string Summary(const DecisionRules& rules, absl::Time now, const Choice& choice,
                    absl::Span<const Candidate> cs) {
  if (choice.chosen < 0) {
    int counts[9] = {};
    for (const Candidate& c : cs) counts[VerdictRank(c.verdict)]++;
    std::vector<std::string> parts;
    const std::pair<OptionVerdict, const char*> named[] = {
        {OptionVerdict::kTooSmall, "too small"},       {OptionVerdict::kPolicy, "ruled out by policy"},
        {OptionVerdict::kBusy, "busy"},                {OptionVerdict::kOverBudget, "over budget"},
        {OptionVerdict::kOverMaxCost, "over max_cost"}};
    for (const auto& [v, name] : named) {
      if (counts[VerdictRank(v)] > 0) parts.push_back(absl::StrCat(counts[VerdictRank(v)], " ", name));
    }
    if (parts.empty()) return "no node can take the job";
    return absl::StrCat("no node can take the job now: ", absl::StrJoin(parts, ", "));
  }
  const Candidate& c = cs[choice.chosen];
  std::string s;
  if (choice.wait && c.deferred) {
    s = absl::StrCat("waiting for the cheaper window on ", Where(c), ": start ", When(c.start),
                     ", finish ", When(c.finish), ", about ", Dollars(c.cost), ", saving ",
                     Dollars(c.cost_at_earliest - c.cost), " against starting at once");
  } else if (choice.wait && c.rental) {
    s = absl::StrCat("waiting for ", Where(c), ": ready in about ", Span(c.start - now),
                     ", finish ", When(c.finish), ", about ", Dollars(c.cost), " at ",
                     Dollars(c.price_per_hour), "/h");
  } else if (choice.wait) {
    s = absl::StrCat("waiting for ", Where(c), ": room expected in ",
                     Span(c.start - now), ", finish ", When(c.finish),
                     ", about ", Dollars(c.cost));
    const int now_best = BestWhere(cs, [](const Candidate& o) {
      return o.fits_now && (o.verdict == OptionVerdict::kDearer || o.verdict == OptionVerdict::kLater ||
                            o.verdict == OptionVerdict::kMissesDeadline);
    }, Cheaper);
    if (now_best >= 0) {
      absl::StrAppend(&s, "; ", cs[now_best].node->record.name, " has room now for ",
                      Dollars(cs[now_best].cost));
    }
  } else {
    s = absl::StrCat("on ", Where(c), ": expected to finish ", When(c.finish), ", about ",
                     Dollars(c.cost));
    switch (choice.local_blocker) {
      case LocalBlocker::kTooSmall: absl::StrAppend(&s, "; no local machine can hold it"); break;
      case LocalBlocker::kBusy:
        absl::StrAppend(&s, "; no local machine can take it now for less");
        break;
      case LocalBlocker::kDeadline:
        absl::StrAppend(&s, "; no local machine can finish by the deadline");
        break;
      case LocalBlocker::kPolicy: absl::StrAppend(&s, "; placement cloud-only"); break;
      case LocalBlocker::kCost: absl::StrAppend(&s, "; cheaper than the local machines"); break;
      case LocalBlocker::kNone: break;
    }
  }
  if (!choice.meets_deadline) {
    absl::StrAppend(&s, "; no node can meet the deadline ", When(rules.deadline),
                    ", this finishes first");
  }
  return s;
}

absl::string_view OptionVerdictName(OptionVerdict v) {
  switch (v) {
    case OptionVerdict::kChosen: return "chosen";
    case OptionVerdict::kTooSmall: return "too-small";
    case OptionVerdict::kPolicy: return "policy";
    case OptionVerdict::kBusy: return "busy";
    case OptionVerdict::kOverMaxCost: return "over-max-cost";
    case OptionVerdict::kOverBudget: return "over-budget";
    case OptionVerdict::kMissesDeadline: return "misses-deadline";
    case OptionVerdict::kDearer: return "dearer";
    case OptionVerdict::kLater: return "later";
  }
  return "unknown";
}

absl::string_view LocalBlockerName(LocalBlocker b) {
  switch (b) {
    case LocalBlocker::kNone: return "none";
    case LocalBlocker::kTooSmall: return "too-small";
    case LocalBlocker::kBusy: return "busy";
    case LocalBlocker::kPolicy: return "policy";
    case LocalBlocker::kCost: return "cost";
    case LocalBlocker::kDeadline: return "deadline";
  }
  return "unknown";
}

absl::Duration ExpectedWithPreemption(absl::Duration runtime, double rate_per_hour) {
  if (rate_per_hour <= 0 || runtime <= absl::ZeroDuration()) return runtime;
  const double x = rate_per_hour * absl::ToDoubleHours(runtime);
  if (x > 30) return absl::InfiniteDuration();  // e^30: the job would practically never finish
  return absl::Hours(std::expm1(x) / rate_per_hour);
}

Choice Decide(const DecisionRules& rules, absl::Time now, absl::Span<Candidate> cs) {
  bool any_local = false, all_local_too_small = true;
  for (Candidate& c : cs) {
    c.start = c.fits_now ? now
              : c.wait < absl::InfiniteDuration() ? now + c.wait
                                                  : absl::InfiniteFuture();
    c.expected_runtime =
        c.spot ? ExpectedWithPreemption(c.runtime, c.preemptions_per_hour) : c.runtime;
    c.finish = c.start == absl::InfiniteFuture() ? absl::InfiniteFuture() : c.start + c.expected_runtime;
    c.deferred = false;
    if (c.expected_runtime == absl::InfiniteDuration()) {
      c.cost = c.price_per_hour > 0 ? HUGE_VAL : 0;
    } else if (c.schedule == nullptr || c.schedule->empty() || c.start == absl::InfiniteFuture()) {
      c.cost = c.price_per_hour * absl::ToDoubleHours(c.expected_runtime + c.paid_idle);
    } else {
      c.cost = cost::CostOver(*c.schedule, c.price_per_hour, c.start, c.expected_runtime);
      if (rules.deadline != absl::InfiniteFuture()) {
        const cost::StartChoice later =
            cost::CheapestStart(*c.schedule, c.price_per_hour, c.start,
                                rules.deadline - c.expected_runtime, c.expected_runtime);
        if (later.start > c.start && later.cost < c.cost - kEps) {
          c.deferred = true;
          c.cost_at_earliest = c.cost;
          c.start = later.start;
          c.finish = later.start + c.expected_runtime;
          c.cost = later.cost;
        }
      }
    }
    if (c.local) {
      any_local = true;
      if (!c.too_small) all_local_too_small = false;
    }
    if (c.too_small) {
      c.verdict = OptionVerdict::kTooSmall;
    } else if (!Allowed(rules, c)) {
      c.verdict = OptionVerdict::kPolicy;
    } else if (rules.max_cost > 0 && c.cost > rules.max_cost + kEps) {
      c.verdict = OptionVerdict::kOverMaxCost;
    } else if (rules.budget_room >= 0 && c.cost > kEps && c.cost > rules.budget_room + kEps) {
      c.verdict = OptionVerdict::kOverBudget;
    } else if (!c.fits_now &&
               (!(c.local || c.rental) || c.start == absl::InfiniteFuture())) {
      c.verdict = OptionVerdict::kBusy;
    } else {
      c.verdict = OptionVerdict::kChosen;  // eligible; settled below
    }
  }
  auto eligible = [](const Candidate& c) { return c.verdict == OptionVerdict::kChosen; };
  auto meets = [&](const Candidate& c) { return eligible(c) && Meets(rules, c); };

  Choice choice;
  if (rules.placement == PlacementPolicy::kPreferLocal) {
    const int local_now =
        BestWhere(cs, [&](const Candidate& c) { return meets(c) && c.local && c.fits_now; }, Cheaper);
    if (local_now >= 0) {
      choice.chosen = local_now;
    } else {
      const int local_wait = BestWhere(
          cs, [&](const Candidate& c) { return meets(c) && c.local && !c.fits_now; }, Cheaper);
      const int burst = BestWhere(
          cs, [&](const Candidate& c) { return meets(c) && !c.local && (c.fits_now || c.rental); },
          Cheaper);
      if (local_wait >= 0 && (burst < 0 || cs[local_wait].cost <= cs[burst].cost + kEps)) {
        choice.chosen = local_wait;
      } else {
        choice.chosen = burst;
      }
    }
  } else {
    choice.chosen = BestWhere(cs, meets, Cheaper);
  }
  if (choice.chosen < 0) {
    choice.chosen = BestWhere(cs, eligible, Sooner);
    choice.meets_deadline = choice.chosen < 0;
  }
  // Waiting for another of the user's machines: stay with the one it waits for unless the move
  // finishes at least kMoveGain sooner without paying more, or pays less without finishing
  // later.
  if (choice.chosen >= 0 && cs[choice.chosen].local && !cs[choice.chosen].fits_now &&
      !cs[choice.chosen].waited_for) {
    const Candidate& best = cs[choice.chosen];
    for (size_t i = 0; i < cs.size(); ++i) {
      const Candidate& c = cs[i];
      if (!c.waited_for || !c.local || c.fits_now ||
          !(choice.meets_deadline ? meets(c) : eligible(c))) {
        continue;
      }
      // When nothing meets the deadline the sooner finish wins, whatever it costs.
      const bool sooner = (!choice.meets_deadline || best.cost <= c.cost + kEps) &&
                          best.finish + kMoveGain <= c.finish;
      const bool cheaper = best.cost < c.cost - kEps && best.finish <= c.finish;
      if (!sooner && !cheaper) choice.chosen = static_cast<int>(i);
      break;
    }
  }
  if (choice.chosen < 0) {
    choice.local_blocker = any_local && all_local_too_small ? LocalBlocker::kTooSmall
                                                            : LocalBlocker::kNone;
    return choice;
  }
  Candidate& chosen = cs[choice.chosen];
  choice.wait = !chosen.fits_now || chosen.deferred;
  for (Candidate& c : cs) {
    if (&c == &chosen || !eligible(c)) continue;
    if (choice.meets_deadline && !Meets(rules, c)) {
      c.verdict = OptionVerdict::kMissesDeadline;
    } else if (c.cost > chosen.cost + kEps) {
      c.verdict = OptionVerdict::kDearer;
    } else {
      c.verdict = OptionVerdict::kLater;
    }
  }
  if (!chosen.local && any_local) {
    if (all_local_too_small) {
      choice.local_blocker = LocalBlocker::kTooSmall;
    } else if (rules.placement == PlacementPolicy::kCloudOnly) {
      choice.local_blocker = LocalBlocker::kPolicy;
    } else if (std::any_of(cs.begin(), cs.end(), [](const Candidate& c) {
                 return c.local && c.fits_now && c.verdict == OptionVerdict::kDearer;
               })) {
      choice.local_blocker = LocalBlocker::kCost;
    } else if (rules.deadline != absl::InfiniteFuture() &&
               std::none_of(cs.begin(), cs.end(), [&](const Candidate& c) {
                 return c.local && c.verdict != OptionVerdict::kTooSmall &&
                        c.verdict != OptionVerdict::kPolicy && Meets(rules, c);
               })) {
      choice.local_blocker = LocalBlocker::kDeadline;
    } else {
      choice.local_blocker = LocalBlocker::kBusy;
    }
  }
  return choice;
}

std::string WhyNeverFits(const Resources& r, const NodeCapabilities& caps) {
  if (r.cpu_millis > caps.cpu_millis) {
    return absl::StrFormat("needs %.1f CPUs, has %.1f", r.cpu_millis / 1000.0,
                           caps.cpu_millis / 1000.0);
  }
  if (r.memory_bytes > caps.memory_bytes) {
    return absl::StrCat("needs ", Gib(r.memory_bytes), " of memory, has ", Gib(caps.memory_bytes));
  }
  if (r.gpus == 0) return "";
  if (caps.gpus.size() < r.gpus) {
    return absl::StrCat("needs ", r.gpus, " GPUs, has ", caps.gpus.size());
  }
  Resources gpu_only;
  gpu_only.gpus = r.gpus;
  gpu_only.gpu_memory_bytes = r.gpu_memory_bytes;
  gpu_only.gpu_models = r.gpu_models;
  if (CouldEverFit(gpu_only, caps)) return "";
  int64_t largest = 0;
  for (const GpuDevice& g : caps.gpus) largest = std::max(largest, g.memory_bytes);
  if (r.gpu_memory_bytes > largest) {
    return absl::StrCat("needs ", Gib(r.gpu_memory_bytes), " of GPU memory, the largest GPU has ",
                        Gib(largest));
  }
  if (!r.gpu_models.empty()) {
    return absl::StrCat("needs GPU model ", absl::StrJoin(r.gpu_models, " or "), ", has ",
                        caps.gpus.front().model);
  }
  return absl::StrCat("needs ", r.gpus, " GPUs with ", Gib(r.gpu_memory_bytes),
                      " each, has fewer");
}

Decision RecordDecision(const DecisionRules& rules, absl::Time now, const Choice& choice,
                        absl::Span<const Candidate> cs, const Resources& resources,
                        size_t max_others) {
  Decision d;
  d.time = now;
  d.placed = choice.chosen >= 0 && !choice.wait;
  d.summary = Summary(rules, now, choice, cs);
  d.local_blocker = choice.local_blocker;
  d.nodes_considered = static_cast<uint32_t>(cs.size());
  std::vector<size_t> order(cs.size());
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](size_t a, size_t b) {
    if (static_cast<int>(a) == choice.chosen) return static_cast<int>(b) != choice.chosen;
    if (static_cast<int>(b) == choice.chosen) return false;
    const int ra = VerdictRank(cs[a].verdict), rb = VerdictRank(cs[b].verdict);
    if (ra != rb) return ra < rb;
    return Cheaper(cs[a], cs[b]);
  };
  const size_t shown = std::min(cs.size(), max_others + (choice.chosen >= 0 ? 1 : 0));
  std::partial_sort(order.begin(), order.begin() + shown, order.end(), before);
  for (size_t k = 0; k < shown; ++k) {
    const Candidate& c = cs[order[k]];
    DecisionOption o;
    o.node = c.node->record.name;
    o.provider = c.node->record.caps.provider;
    o.local = c.local;
    o.spot = c.spot;
    o.fits_now = c.fits_now;
    o.start = c.start;
    o.finish = c.finish;
    o.runtime = c.expected_runtime;
    o.price_per_hour = c.price_per_hour;
    o.cost = c.cost;
    o.deferred = c.deferred;
    o.cost_at_earliest = c.cost_at_earliest;
    o.verdict = c.verdict;
    o.rental = c.rental;
    o.reason = Reason(rules, now, choice, cs, c, resources);
    d.options.push_back(std::move(o));
  }
  d.nodes_not_shown = static_cast<uint32_t>(cs.size() - shown);
  return d;
}

}  // namespace sched
