# Build helpers shared by every module: warnings, sanitizers, module libraries, unit tests.

# Warnings go through an interface target that modules link PRIVATE.
add_library(mg_warnings INTERFACE)
target_compile_options(mg_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith
  -Wformat=2 -Wvla -Wno-unused-parameter
  $<$<BOOL:${MG_WERROR}>:-Werror>)

# Sanitizers apply to everything built, tests included.
if(MG_SANITIZE)
  string(REPLACE "," ";" _mg_sanitizers "${MG_SANITIZE}")
  foreach(_s IN LISTS _mg_sanitizers)
    add_compile_options(-fsanitize=${_s})
    add_link_options(-fsanitize=${_s})
  endforeach()
  add_compile_options(-fno-omit-frame-pointer -fno-sanitize-recover=all)
endif()

# The fuzz build: every library gets libFuzzer's coverage instrumentation (fuzzer-no-link) with
# ASan and UBSan, so the fuzz targets see the code they drive; only the targets themselves link
# libFuzzer's driver (-fsanitize=fuzzer, tests/fuzz/CMakeLists.txt). A UBSan report aborts, so
# libFuzzer records it as a crash.
if(MG_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MG_FUZZ needs clang (-DCMAKE_C_COMPILER=clang), not "
      "${CMAKE_C_COMPILER_ID}: libFuzzer is part of clang (Debian: clang, libfuzzer-14-dev)")
  endif()
  if(MG_SANITIZE)
    message(FATAL_ERROR "MG_FUZZ brings its own sanitizers (address,undefined): "
      "leave MG_SANITIZE empty")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()

add_compile_definitions(_GNU_SOURCE MG_VERSION="${PROJECT_VERSION}")

# mg_add_module(NAME mg_common SOURCES ... LIBS ...)
# One static library per folder under src/; headers are included as "module/header.h".
function(mg_add_module)
  cmake_parse_arguments(M "" "NAME" "SOURCES;LIBS" ${ARGN})
  add_library(${M_NAME} STATIC ${M_SOURCES})
  target_include_directories(${M_NAME} PUBLIC ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(${M_NAME} PUBLIC ${M_LIBS} PRIVATE mg_warnings)
endfunction()

# mg_add_unit_test(FILE tests/unit/x/test_y.c LIBS ... [TIMEOUT s] [LABELS ...])
# One Criterion executable per test file, registered with ctest under its file name, with a
# ctest timeout as a second guard next to Criterion's own per-test timeout.
function(mg_add_unit_test)
  cmake_parse_arguments(T "" "FILE;TIMEOUT" "LIBS;LABELS" ${ARGN})
  get_filename_component(_name ${T_FILE} NAME_WE)
  get_filename_component(_dir ${T_FILE} DIRECTORY)
  get_filename_component(_module ${_dir} NAME)
  set(_target ${_module}_${_name})
  add_executable(${_target} ${T_FILE})
  target_link_libraries(${_target} PRIVATE ${T_LIBS} PkgConfig::CRITERION mg_warnings)
  target_include_directories(${_target} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_test(NAME ${_target} COMMAND ${_target} --jobs=1 --ascii)
  set_tests_properties(${_target} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "unit;${T_LABELS}")
  mg_sanitizer_guard(${_target})
endfunction()

# Criterion reports a test as passed even when the sanitizer runtime printed a report in its
# worker process (a leak is found at exit, after the verdict), so in a sanitizer build the
# report itself fails the test. For every Criterion-based ctest test.
function(mg_sanitizer_guard test_name)
  if(MG_SANITIZE)
    set_tests_properties(${test_name} PROPERTIES FAIL_REGULAR_EXPRESSION
      "ERROR: LeakSanitizer|ERROR: AddressSanitizer|runtime error: |SUMMARY: UndefinedBehaviorSanitizer")
  endif()
endfunction()
