# cmake -DIN=file -DOUT=file.cpp -DNAME=identifier -P zmqkit_embed_file.cmake (see zmqkit_embed.cmake)
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hex_length)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
# Lines of 16 bytes keep the generated file readable by compilers and people.
string(REGEX REPLACE "(('\\\\x[0-9a-f][0-9a-f]',){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "// Generated from ${IN} by zmqkit_embed_file.cmake: do not edit.
#include <string_view>
namespace zmqkit::embedded {
namespace {
const char ${NAME}_bytes[] = {
${bytes}'\\0'};
}  // namespace
extern const std::string_view ${NAME}(${NAME}_bytes, sizeof ${NAME}_bytes - 1);
}  // namespace zmqkit::embedded
")
