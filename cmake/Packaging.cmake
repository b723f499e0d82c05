# Install rules and the Debian packages: sched-schedd, sched-agent and schedctl.
#
#   cd build && cpack -G DEB            # three .deb files, from the binaries already built
#   cmake --install build --prefix /tmp/root --component schedd   # the same tree, to look at
#
# Destinations are relative to a prefix of "/" (usr/bin, etc/sched, lib/systemd/system), so that
# an install with --prefix stays under that prefix and the packages put the files where Debian
# expects them (CPACK_PACKAGING_INSTALL_PREFIX is "/").

# cpack runs the "preinstall" target first, which by default builds everything ("all"): not here.
# Packages are made from what was built; a missing binary fails the install step instead.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)

set(SCHED_DEPLOY_DIR ${CMAKE_SOURCE_DIR}/deploy)
set(SCHED_PACKAGING_DIR ${CMAKE_BINARY_DIR}/packaging)

# ---- what goes where ---------------------------------------------------------------------------

install(TARGETS schedd RUNTIME DESTINATION usr/bin COMPONENT schedd)
install(TARGETS sched_agent RUNTIME DESTINATION usr/bin COMPONENT agent)
install(TARGETS schedctl RUNTIME DESTINATION usr/bin COMPONENT schedctl)

# The provider programs import sched_provider.py from their own folder (sys.path[0] is the
# folder of their real path), so they go together.
file(GLOB SCHED_PROVIDER_PROGRAMS ${SCHED_DEPLOY_DIR}/providers/sched-provider-*)
install(PROGRAMS ${SCHED_PROVIDER_PROGRAMS} DESTINATION usr/lib/sched/providers COMPONENT schedd)
install(FILES ${SCHED_DEPLOY_DIR}/providers/sched_provider.py
        DESTINATION usr/lib/sched/providers COMPONENT schedd)

# schedd looks for /usr/share/sched/catalog.yaml when --catalog and $SCHED_CATALOG are not given.
install(FILES ${SCHED_DEPLOY_DIR}/catalog/catalog.yaml DESTINATION usr/share/sched
        COMPONENT schedd)

install(FILES ${SCHED_DEPLOY_DIR}/systemd/schedd.service DESTINATION lib/systemd/system
        COMPONENT schedd)
install(FILES ${SCHED_DEPLOY_DIR}/systemd/sched-agent.service DESTINATION lib/systemd/system
        COMPONENT agent)

# Configuration: conffiles, 0640 (the env files may hold provider API keys; systemd reads them as
# root). The example stays an example: the unit names no autoscale file until one is given.
set(SCHED_CONFIG_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(FILES ${SCHED_DEPLOY_DIR}/etc/schedd.env DESTINATION etc/sched
        PERMISSIONS ${SCHED_CONFIG_PERMISSIONS} COMPONENT schedd)
install(FILES ${SCHED_DEPLOY_DIR}/etc/autoscale.yaml.example DESTINATION etc/sched
        PERMISSIONS ${SCHED_CONFIG_PERMISSIONS} COMPONENT schedd)
install(FILES ${SCHED_DEPLOY_DIR}/etc/sched-agent.env DESTINATION etc/sched
        PERMISSIONS ${SCHED_CONFIG_PERMISSIONS} COMPONENT agent)

# Man pages, compressed as Debian policy wants (gzip -9n: no name or time stamp, so the same page
# gives the same bytes). Remade at configure time; editing a page reruns the configure step.
foreach(_sched_man IN ITEMS schedd:schedd sched-agent:agent schedctl:schedctl)
  string(REPLACE ":" ";" _sched_man "${_sched_man}")
  list(GET _sched_man 0 _sched_page)
  list(GET _sched_man 1 _sched_component)
  set(_sched_src ${SCHED_DEPLOY_DIR}/man/${_sched_page}.1)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_sched_src})
  file(MAKE_DIRECTORY ${SCHED_PACKAGING_DIR}/man)
  execute_process(COMMAND gzip -9n -c ${_sched_src}
                  OUTPUT_FILE ${SCHED_PACKAGING_DIR}/man/${_sched_page}.1.gz
                  RESULT_VARIABLE _sched_gzip)
  if(NOT _sched_gzip EQUAL 0)
    message(FATAL_ERROR "gzip ${_sched_src} failed: ${_sched_gzip}")
  endif()
  install(FILES ${SCHED_PACKAGING_DIR}/man/${_sched_page}.1.gz DESTINATION usr/share/man/man1
          COMPONENT ${_sched_component})
endforeach()

# ---- maintainer scripts ------------------------------------------------------------------------

# Both daemons run as the system user sched. Each package's postinst creates it if missing and its
# state folder (and restarts the unit after an upgrade); its prerm stops the unit on removal; its
# postrm removes its state folder on purge, and the user once the other package is gone too.
#   SCHED_PKG        this package        SCHED_OTHER_PKG   the other package using the user
#   SCHED_UNIT       its systemd unit
#   SCHED_STATE_DIR  its state folder    SCHED_STATE_MODE  that folder's mode
function(sched_maintainer_scripts component pkg unit other_pkg state_dir state_mode)
  set(SCHED_PKG ${pkg})
  set(SCHED_UNIT ${unit})
  set(SCHED_OTHER_PKG ${other_pkg})
  set(SCHED_STATE_DIR ${state_dir})
  set(SCHED_STATE_MODE ${state_mode})
  set(out ${SCHED_PACKAGING_DIR}/${component})
  set(exec OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ
      WORLD_EXECUTE)
  configure_file(${SCHED_DEPLOY_DIR}/debian/postinst.in ${out}/postinst @ONLY
                 FILE_PERMISSIONS ${exec})
  configure_file(${SCHED_DEPLOY_DIR}/debian/prerm.in ${out}/prerm @ONLY FILE_PERMISSIONS ${exec})
  configure_file(${SCHED_DEPLOY_DIR}/debian/postrm.in ${out}/postrm @ONLY FILE_PERMISSIONS ${exec})
endfunction()

sched_maintainer_scripts(schedd sched-schedd schedd.service sched-agent /var/lib/sched 0700)
sched_maintainer_scripts(agent sched-agent sched-agent.service sched-schedd /var/lib/sched-agent
                         0700)

# conffiles: every file the package puts under /etc.
file(WRITE ${SCHED_PACKAGING_DIR}/schedd/conffiles
     "/etc/sched/schedd.env\n/etc/sched/autoscale.yaml.example\n")
file(WRITE ${SCHED_PACKAGING_DIR}/agent/conffiles "/etc/sched/sched-agent.env\n")

# ---- CPack -------------------------------------------------------------------------------------

set(CPACK_PACKAGE_NAME sched)
set(CPACK_PACKAGE_VENDOR "sched")
set(SCHED_PACKAGE_MAINTAINER "sched maintainers <sched@localhost>" CACHE STRING
    "The Maintainer field of the Debian packages: Name <address>")
set(CPACK_PACKAGE_CONTACT "${SCHED_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Each package's Description is its component's: the first line is the synopsis.
set(CPACK_PACKAGING_INSTALL_PREFIX "/")
set(CPACK_STRIP_FILES TRUE)
set(CPACK_COMPONENTS_ALL schedd agent schedctl)

set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime libraries (gRPC, protobuf, Abseil, RocksDB, OpenSSL...) found by dpkg-shlibdeps from
# the installed binaries (package dpkg-dev).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

set(CPACK_DEBIAN_SCHEDD_PACKAGE_NAME sched-schedd)
set(CPACK_DEBIAN_SCHEDD_PACKAGE_DEPENDS "python3, adduser")
set(CPACK_DEBIAN_SCHEDD_PACKAGE_SUGGESTS "schedctl")
set(CPACK_COMPONENT_SCHEDD_DESCRIPTION
    "sched central daemon (schedd)\n\
schedd keeps the queue of jobs, places them on the machines whose agents are\n\
connected, meters what they cost against project budgets, and can rent GPU\n\
machines from RunPod, Vast.ai, AWS or a Slurm cluster when jobs need them.\n\
Includes the systemd unit, the GPU catalog and the provider programs.")
set(CPACK_DEBIAN_SCHEDD_PACKAGE_CONTROL_EXTRA
    "${SCHED_PACKAGING_DIR}/schedd/postinst;${SCHED_PACKAGING_DIR}/schedd/prerm;\
${SCHED_PACKAGING_DIR}/schedd/postrm;${SCHED_PACKAGING_DIR}/schedd/conffiles")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME sched-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")
set(CPACK_COMPONENT_AGENT_DESCRIPTION
    "sched per-machine agent (sched-agent)\n\
sched-agent dials out to schedd, reports the machine's CPUs, memory, GPUs and\n\
price, and runs the jobs schedd gives it. Includes the systemd unit.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
    "${SCHED_PACKAGING_DIR}/agent/postinst;${SCHED_PACKAGING_DIR}/agent/prerm;\
${SCHED_PACKAGING_DIR}/agent/postrm;${SCHED_PACKAGING_DIR}/agent/conffiles")

set(CPACK_DEBIAN_SCHEDCTL_PACKAGE_NAME schedctl)
set(CPACK_COMPONENT_SCHEDCTL_DESCRIPTION
    "sched command-line client (schedctl)\n\
schedctl submits, watches and cancels jobs, and manages nodes, budgets and\n\
API tokens of a sched cluster.")

include(CPack)
