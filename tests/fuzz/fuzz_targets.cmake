# Fuzz targets: one LLVMFuzzerTestOneInput per <target>_fuzz.cc, seeds in corpus/<target>/.
#
# Included from the top-level CMakeLists.txt with -DREGD_FUZZ=ON (clang;
# scripts/fuzz.sh, build dir build-fuzz): each target links libFuzzer, and the
# target regd_fuzz builds them all.
# Included from tests/CMakeLists.txt otherwise (the normal and the ASan+UBSan
# builds): each target links replay_main.cc instead, and ctest replays its seeds
# (fuzz_replay_<target>).
set(REGD_FUZZ_TARGETS
  reference www_authenticate manifest token_response docker_config config_file headers
  oci_layout text)
set(REGD_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

if(REGD_FUZZ)
  add_custom_target(regd_fuzz)
endif()

foreach(t ${REGD_FUZZ_TARGETS})
  if(REGD_FUZZ)
    add_executable(fuzz_${t} ${REGD_FUZZ_DIR}/${t}_fuzz.cc)
    target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
    add_dependencies(regd_fuzz fuzz_${t})
  else()
    add_executable(fuzz_${t} ${REGD_FUZZ_DIR}/${t}_fuzz.cc ${REGD_FUZZ_DIR}/replay_main.cc)
    add_test(NAME fuzz_replay_${t} COMMAND fuzz_${t} ${REGD_FUZZ_DIR}/corpus/${t})
  endif()
  target_link_libraries(fuzz_${t} PRIVATE regd_core)
  set_target_properties(fuzz_${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endforeach()
