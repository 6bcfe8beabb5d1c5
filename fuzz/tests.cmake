# The fuzzers in the test command (included at the end of tests/CMakeLists.txt):
# Fuzz.Build configures and builds fuzz/ with Clang into <build>/fuzz, then Fuzz.idx,
# Fuzz.checkpoint, Fuzz.captions and Fuzz.image each run scripts/fuzz for 20 seconds on
# their seed corpus. A finding fails the test; its input stays in <build>/fuzz/findings.
# Not registered in sanitizer builds (the fuzzers carry their own sanitizers) or when
# Clang or its libFuzzer runtime (Debian: clang, libclang-rt-14-dev) is missing.
if(ATTEND_SANITIZE)
  return()
endif()
find_program(ATTEND_FUZZ_CLANGXX NAMES clang++ clang++-14)
if(NOT ATTEND_FUZZ_CLANGXX)
  message(STATUS "Fuzz tests: not registered (no clang++)")
  return()
endif()
execute_process(COMMAND ${ATTEND_FUZZ_CLANGXX} -print-resource-dir
                OUTPUT_VARIABLE _attend_fuzz_resource_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT EXISTS "${_attend_fuzz_resource_dir}/lib/linux/libclang_rt.fuzzer-${CMAKE_SYSTEM_PROCESSOR}.a")
  message(STATUS "Fuzz tests: not registered (no libFuzzer runtime beside ${ATTEND_FUZZ_CLANGXX})")
  return()
endif()

set(_attend_fuzz_script ${PROJECT_SOURCE_DIR}/scripts/fuzz)
set(_attend_fuzz_build ${PROJECT_BINARY_DIR}/fuzz)
add_test(NAME Fuzz.Build COMMAND ${_attend_fuzz_script} --build-only --build ${_attend_fuzz_build})
set_tests_properties(Fuzz.Build PROPERTIES LABELS fuzz TIMEOUT 1500 FIXTURES_SETUP attend_fuzzers
  ENVIRONMENT "CXX=${ATTEND_FUZZ_CLANGXX}")
foreach(_name idx checkpoint captions image)
  add_test(NAME Fuzz.${_name}
    COMMAND ${_attend_fuzz_script} --no-build --seconds 20 --build ${_attend_fuzz_build} ${_name})
  set_tests_properties(Fuzz.${_name} PROPERTIES LABELS fuzz TIMEOUT 240 FIXTURES_REQUIRED attend_fuzzers
    ENVIRONMENT "ATTEND_FUZZ_KEEP_CRCS=1")
endforeach()
