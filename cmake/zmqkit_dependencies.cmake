# Finds zmqkit's dependencies; shared by the build and the installed package config.
# msgpack-c's C++ package is `msgpack-cxx` (target msgpack-cxx) upstream and
# `msgpack` (target msgpackc-cxx) in Debian 12; accept either.
include(CMakeFindDependencyMacro)
find_dependency(cppzmq)
find_package(msgpack-cxx CONFIG QUIET)
if(TARGET msgpack-cxx)
  set(ZMQKIT_MSGPACK_TARGET msgpack-cxx)
else()
  find_dependency(msgpack CONFIG)
  if(TARGET msgpackc-cxx)
    set(ZMQKIT_MSGPACK_TARGET msgpackc-cxx)
  else()
    message(FATAL_ERROR "zmqkit: found no msgpack-c C++ target (msgpack-cxx or msgpackc-cxx)")
  endif()
endif()

# Private to the library, but a static libzmqkit needs them at the consumer's link step:
# Abseil's hash tables, libsodium's keyed hash (zmqkit/internal/keyed_hash.hpp) and
# LMDB (the durable stores, zmqkit/internal/lmdb_env.hpp).
find_dependency(absl CONFIG)
find_dependency(PkgConfig)
pkg_check_modules(libsodium REQUIRED IMPORTED_TARGET GLOBAL libsodium)
pkg_check_modules(lmdb REQUIRED IMPORTED_TARGET GLOBAL lmdb)
