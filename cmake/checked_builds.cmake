# Checked builds, each in its own build directory (scripts/regd.sh sanitize|fuzz|tsa):
#
#   REGD_SANITIZE       everything (regd_core, the server, regd, the tests) with
#                       ASan+UBSan; any UBSan finding aborts. The tests get
#                       ASAN_OPTIONS/UBSAN_OPTIONS from tests/sanitizers/.
#                       Use clang: with g++, UBSan is a runtime of its own
#                       (libubsan) that ignores log_path, so its reports would
#                       miss the check at the end of the suite.
#   REGD_FUZZ           clang only: regd_core with -fsanitize=fuzzer-no-link,
#                       address,undefined and the libFuzzer targets of tests/fuzz
#                       (build the target regd_fuzz; nothing else is needed).
#   REGD_THREAD_SAFETY  clang only: -Wthread-safety as errors, which checks the
#                       ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations
#                       (g++ ignores them).
#
# Included from the top-level CMakeLists.txt before any target is defined, so
# the flags below apply to every target.

option(REGD_SANITIZE "Build everything with ASan+UBSan" OFF)
option(REGD_FUZZ "Build regd_core and the libFuzzer targets in tests/fuzz (clang)" OFF)
option(REGD_THREAD_SAFETY "Check lock annotations with clang's -Wthread-safety" OFF)

# Every UBSan check aborts, except pointer-overflow, which is left recoverable
# only so that tests/sanitizers/ubsan.supp can silence RapidJSON 1.1's
# null+offset in internal/stack.h (Tencent/rapidjson#1724, fixed after 1.1.0);
# with UBSAN_OPTIONS=halt_on_error=1 any other pointer overflow still aborts.
set(REGD_UBSAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fsanitize-recover=pointer-overflow -fno-omit-frame-pointer)

if(REGD_SANITIZE AND REGD_FUZZ)
  message(FATAL_ERROR "REGD_SANITIZE and REGD_FUZZ want separate build directories")
endif()

# RapidJSON's iterators trip clang's C++20 reversed-operator warning in every
# file that walks a document; it is the header's, not ours.
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  add_compile_options(-Wno-ambiguous-reversed-operator)
endif()

if(REGD_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(WARNING "REGD_SANITIZE: UBSan reports go to stderr only with this compiler; "
                    "use -DCMAKE_CXX_COMPILER=clang++-14")
  endif()
  add_compile_options(${REGD_UBSAN_FLAGS})
  add_link_options(-fsanitize=address,undefined)
endif()

if(REGD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "REGD_FUZZ needs clang (-DCMAKE_CXX_COMPILER=clang++-14)")
  endif()
  # Only regd_core and the fuzz targets: no gtests (they would add the targets again).
  set(REGD_BUILD_TESTS OFF CACHE BOOL "Build the tests" FORCE)
  # The fuzz targets add -fsanitize=fuzzer themselves (tests/fuzz/fuzz_targets.cmake).
  add_compile_options(-fsanitize=fuzzer-no-link ${REGD_UBSAN_FLAGS})
  add_link_options(-fsanitize=address,undefined)
endif()

if(REGD_THREAD_SAFETY)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "REGD_THREAD_SAFETY needs clang (-DCMAKE_CXX_COMPILER=clang++-14)")
  endif()
  add_compile_options(-Wthread-safety -Wthread-safety-beta -Werror=thread-safety
                      -Werror=thread-safety-beta)
endif()
