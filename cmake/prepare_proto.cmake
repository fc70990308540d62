# Copies registry.proto for the C++ generator, renaming fields called
# `descriptor` (see the comment in CMakeLists.txt). Usage:
#   cmake -DIN=<proto> -DOUT=<proto> -P prepare_proto.cmake
file(READ "${IN}" text)
string(REGEX REPLACE "Descriptor descriptor = ([0-9]+);"
       "Descriptor descriptor_ = \\1 [json_name = \"descriptor\"];" text "${text}")
file(WRITE "${OUT}" "${text}")
