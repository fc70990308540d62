# With -DREGD_SANITIZE=ON (build-asan, `scripts/regd.sh sanitize`): every test of
# this directory runs with the sanitizer options below, and a report from any
# process makes the run fail, including the daemons that the integration tests
# start and stop themselves.
#
# Reports go to files (log_path) in <build>/sanitizer-reports rather than to
# stderr, because a daemon's stderr belongs to the test that started it and a
# report there could go unseen (a test that kills the daemon, or expects it to
# fail). The fixture's setup test empties that directory; its cleanup test,
# sanitizer_reports, runs after every other test and fails, printing them, if any
# report was written. A process that finds an error also exits with status 86,
# so the test that ran it fails too.
#
# Included from tests/CMakeLists.txt; the work is deferred to the end of that
# file so that it covers tests added after the include.
if(NOT REGD_SANITIZE)
  return()
endif()

set(REGD_SAN_DIR ${CMAKE_CURRENT_LIST_DIR})
set(REGD_SAN_REPORTS ${CMAKE_BINARY_DIR}/sanitizer-reports)

function(regd_sanitize_tests)
  get_property(tests DIRECTORY PROPERTY TESTS)
  set(common "exitcode=86:log_path=${REGD_SAN_REPORTS}/report")
  # Reports name functions and lines (llvm-14 ships only llvm-symbolizer-14 in PATH).
  find_program(REGD_LLVM_SYMBOLIZER NAMES llvm-symbolizer llvm-symbolizer-14
               HINTS /usr/lib/llvm-14/bin)
  if(REGD_LLVM_SYMBOLIZER)
    string(APPEND common ":external_symbolizer_path=${REGD_LLVM_SYMBOLIZER}")
  endif()
  # detect_leaks: LeakSanitizer at every exit (no suppressions needed so far,
  # gRPC, protobuf, absl and curl included).
  # quarantine_size_mb: freed blocks ASan holds back to catch use after free;
  # its default (256) alone would break test_limits' bound on the daemon's
  # peak memory (VmHWM under 200 MB with 32 concurrent 4 MiB writes).
  set(asan "ASAN_OPTIONS=${common}:halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:quarantine_size_mb=16")
  set(ubsan "UBSAN_OPTIONS=${common}:halt_on_error=1:print_stacktrace=1:suppressions=${REGD_SAN_DIR}/ubsan.supp")
  foreach(t ${tests})
    set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "${asan}" "${ubsan}")
    set_property(TEST ${t} APPEND PROPERTY FIXTURES_REQUIRED sanitizer_reports)
  endforeach()

  add_test(NAME sanitizer_reports_clear
           COMMAND ${CMAKE_COMMAND} -DREPORTS=${REGD_SAN_REPORTS} -DMODE=clear
                   -P ${REGD_SAN_DIR}/reports.cmake)
  set_tests_properties(sanitizer_reports_clear PROPERTIES FIXTURES_SETUP sanitizer_reports)
  add_test(NAME sanitizer_reports
           COMMAND ${CMAKE_COMMAND} -DREPORTS=${REGD_SAN_REPORTS} -DMODE=check
                   -P ${REGD_SAN_DIR}/reports.cmake)
  set_tests_properties(sanitizer_reports PROPERTIES FIXTURES_CLEANUP sanitizer_reports)
endfunction()

cmake_language(DEFER CALL regd_sanitize_tests)
