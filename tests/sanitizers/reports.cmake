# ctest helper for tests/sanitizers/sanitizers.cmake:
#   cmake -DREPORTS=DIR -DMODE=clear -P reports.cmake   empty DIR before the suite
#   cmake -DREPORTS=DIR -DMODE=check -P reports.cmake   fail, printing them, if DIR holds reports
if(MODE STREQUAL "clear")
  file(REMOVE_RECURSE ${REPORTS})
  file(MAKE_DIRECTORY ${REPORTS})
  # Writable by a daemon that a test runs as another uid (test_limits).
  execute_process(COMMAND chmod 1777 ${REPORTS})
elseif(MODE STREQUAL "check")
  file(GLOB reports ${REPORTS}/*)
  if(reports)
    list(LENGTH reports n)
    foreach(r ${reports})
      file(READ ${r} text)
      message("==== ${r}\n${text}")
    endforeach()
    message(FATAL_ERROR "${n} sanitizer report(s) in ${REPORTS}")
  endif()
  message("no sanitizer reports")
else()
  message(FATAL_ERROR "MODE must be clear or check")
endif()
