# Helpers that give every attend target the same flags, precompiled header and
# install layout. One precompiled header (LibTorch + the C++ std headers we use)
# is built once for the libraries and once for the executables and reused by all.

include_guard(GLOBAL)

if(ATTEND_SANITIZE)
  string(REPLACE "," ";" _attend_sanitizers "${ATTEND_SANITIZE}")
  foreach(_s IN LISTS _attend_sanitizers)
    if(NOT _s MATCHES "^(address|undefined|leak|thread)$")
      message(FATAL_ERROR "ATTEND_SANITIZE: unknown sanitizer '${_s}' (expected address, undefined, leak or thread)")
    endif()
  endforeach()
  add_compile_options(-fsanitize=${ATTEND_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  # GCC 12 reports c10::optional<at::Generator> in LibTorch's headers as "maybe
  # uninitialized" only in sanitizer builds: a false positive, kept out of our logs.
  add_compile_options(-Wno-maybe-uninitialized)
  add_link_options(-fsanitize=${ATTEND_SANITIZE})
endif()

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  # ccache only caches translation units that use a precompiled header when told
  # to be sloppy about the PCH's defines and timestamps.
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${CCACHE_PROGRAM})
endif()

# Warnings on our own code only (LibTorch and OpenCV headers are SYSTEM).
function(attend_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Winvalid-pch)
endfunction()

# Precompiled-header carriers: an object library per kind of code (PIC libraries,
# executables). CMake only reuses a PCH between targets with identical flags.
function(_attend_pch_carrier name pic)
  if(TARGET ${name})
    return()
  endif()
  set(_src ${PROJECT_BINARY_DIR}/${name}.cpp)
  if(NOT EXISTS ${_src})
    file(WRITE ${_src} "// carrier of the shared precompiled header\n")
  endif()
  add_library(${name} OBJECT ${_src})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ${pic})
  target_link_libraries(${name} PRIVATE attend_torch)
  attend_warnings(${name})
  target_precompile_headers(${name} PRIVATE
    <torch/torch.h> <algorithm> <cstdint> <memory> <string> <vector> <stdexcept>)
endfunction()

function(attend_use_pch target kind)
  if(NOT ATTEND_USE_PCH)
    return()
  endif()
  if(kind STREQUAL "library")
    _attend_pch_carrier(attend_pch_lib ON)
    target_precompile_headers(${target} REUSE_FROM attend_pch_lib)
  else()
    _attend_pch_carrier(attend_pch_exe OFF)
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_precompile_headers(${target} REUSE_FROM attend_pch_exe)
  endif()
endfunction()

# attend_library(<folder> SOURCES ... DEPS ...): target attend_<folder>, alias
# attend::<folder>, public headers in <folder>/include.
function(attend_library folder)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target attend_${folder})
  add_library(${target} ${ARG_SOURCES})
  add_library(attend::${folder} ALIAS ${target})
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${folder}
    OUTPUT_NAME attend_${folder}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC attend_torch ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  attend_warnings(${target})
  attend_use_pch(${target} library)
endfunction()
