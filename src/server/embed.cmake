# Writes OUTPUT, a C file defining srv_openapi_yaml (the bytes of INPUT) and its
# length, so that lossd serves the contract without a file at run time.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp" "/* Generated from api/openapi.yaml by src/server/embed.cmake. */\n#include <stddef.h>\nconst char srv_openapi_yaml[] = {\n${bytes}0x00};\nconst size_t srv_openapi_yaml_len = ${len};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
