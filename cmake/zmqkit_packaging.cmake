# pkg-config file, systemd units with their config files, and the Debian packages (cpack).
#
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-deb && (cd build-deb && cpack)
#     -> zmqkit-dev_<version>_<arch>.deb  package libzmqkit-dev: library, headers, CMake config, zmqkit.pc
#     -> zmqkit-bin_<version>_<arch>.deb  package zmqkit: the programs, systemd units, /etc/zmqkit/
# Install components: `dev` and `programs` (the default for install() rules without COMPONENT).

# --- pkg-config ---------------------------------------------------------------
# libzmqkit links Abseil's hash tables, libsodium and LMDB privately (zmqkit_dependencies.cmake).
# They belong in Requires.private; but when the library is static (the default, and what
# the package ships) every link of it needs them, and a plain `pkg-config --libs` leaves
# Requires.private out, so for a static library they are listed in Requires as well.
set(ZMQKIT_PC_REQUIRES_PRIVATE "absl_flat_hash_map absl_btree libsodium lmdb")
get_target_property(zmqkit_library_type zmqkit TYPE)
if(zmqkit_library_type STREQUAL "STATIC_LIBRARY")
  set(ZMQKIT_PC_REQUIRES_STATIC ", ${ZMQKIT_PC_REQUIRES_PRIVATE}")
else()
  set(ZMQKIT_PC_REQUIRES_STATIC "")
endif()
# Relative to ${prefix}, so the file is right wherever the tree is installed (--prefix).
set(ZMQKIT_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
set(ZMQKIT_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/zmqkit.pc.in ${CMAKE_CURRENT_BINARY_DIR}/zmqkit.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/zmqkit.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# --- systemd units and their config files ---------------------------------------
# Debian installs configuration in /etc, not /usr/etc: with the /usr prefix (the
# package), GNUInstallDirs' full sysconfdir is /etc; under any other prefix the
# files stay inside it (<prefix>/etc/zmqkit), so `cmake --install --prefix DIR` never
# writes outside DIR.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(ZMQKIT_CONFIG_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/zmqkit)
else()
  set(ZMQKIT_CONFIG_DIR ${CMAKE_INSTALL_SYSCONFDIR}/zmqkit)
endif()
set(ZMQKIT_FULL_CONFIG_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/zmqkit)
foreach(unit zmqkit-queue.service zmqkit-forwarder.service)
  configure_file(${PROJECT_SOURCE_DIR}/packaging/systemd/${unit}.in ${CMAKE_CURRENT_BINARY_DIR}/packaging/${unit} @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/packaging/${unit} DESTINATION lib/systemd/system)
endforeach()
# The units' Documentation= points here.
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
set(ZMQKIT_CONFFILES queue.toml forwarder.toml)
foreach(conf ${ZMQKIT_CONFFILES})
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/etc/${conf} DESTINATION ${ZMQKIT_CONFIG_DIR})
endforeach()

# --- Debian packages --------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME zmqkit)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_CONTACT "zmqkit maintainers <zmqkit@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL dev programs)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
find_program(DPKG_PROGRAM dpkg)
if(DPKG_PROGRAM)
  execute_process(COMMAND ${DPKG_PROGRAM} --print-architecture OUTPUT_VARIABLE zmqkit_deb_arch
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
else()
  set(zmqkit_deb_arch ${CMAKE_SYSTEM_PROCESSOR})
endif()
set(zmqkit_deb_version ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE})

# libzmqkit-dev: a static library, so nothing for dpkg-shlibdeps to find; its
# headers and CMake config need the -dev packages of what it links.
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libzmqkit-dev)
set(CPACK_DEBIAN_DEV_FILE_NAME zmqkit-dev_${zmqkit_deb_version}_${zmqkit_deb_arch}.deb)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libzmq3-dev, cppzmq-dev, libmsgpack-cxx-dev, libabsl-dev, libsodium-dev, liblmdb-dev, pkg-config")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "zmqkit: development files\n Brokerless messaging patterns on ZeroMQ: static library, headers,\n CMake package (find_package(zmqkit)) and pkg-config file (zmqkit.pc).")

# zmqkit: the programs; dpkg-shlibdeps works out the shared libraries they need.
set(CPACK_DEBIAN_PROGRAMS_PACKAGE_NAME zmqkit)
set(CPACK_DEBIAN_PROGRAMS_FILE_NAME zmqkit-bin_${zmqkit_deb_version}_${zmqkit_deb_arch}.deb)
set(CPACK_DEBIAN_PROGRAMS_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PROGRAMS_PACKAGE_SHLIBDEPS ON)
set(CPACK_COMPONENT_PROGRAMS_DESCRIPTION
    "zmqkit: queue device, forwarder and tools\n zmqkit-queue (queue device), zmqkit-forwarder (pub/sub forwarder),\n zmqkit (command-line client) and zmqkit-keygen (CURVE keys);\n systemd units for the queue and the forwarder, configured in /etc/zmqkit.")
# Maintainer scripts (systemd: reload on install, stop and disable on removal) and the
# conffiles list (dpkg keeps a locally edited /etc/zmqkit/*.toml across upgrades).
set(zmqkit_conffiles "")
foreach(conf ${ZMQKIT_CONFFILES})
  string(APPEND zmqkit_conffiles "${ZMQKIT_FULL_CONFIG_DIR}/${conf}\n")
endforeach()
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/packaging/deb/conffiles "${zmqkit_conffiles}")
set(CPACK_DEBIAN_PROGRAMS_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_BINARY_DIR}/packaging/deb/conffiles)
foreach(script postinst prerm postrm)
  list(APPEND CPACK_DEBIAN_PROGRAMS_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/packaging/deb/${script})
endforeach()
set(CPACK_DEBIAN_PROGRAMS_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
