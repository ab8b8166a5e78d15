# zmqkit_embed(TARGET FILE NAME): compiles FILE's bytes into TARGET as
#   namespace zmqkit::embedded { extern const std::string_view NAME; }
# so a program serves its web page from the binary (no files to install, nothing fetched).
set(ZMQKIT_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/zmqkit_embed_file.cmake)
function(zmqkit_embed target file name)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_${name}.cpp)
  add_custom_command(OUTPUT ${out}
                     COMMAND ${CMAKE_COMMAND} -DIN=${file} -DOUT=${out} -DNAME=${name} -P ${ZMQKIT_EMBED_SCRIPT}
                     DEPENDS ${file} ${ZMQKIT_EMBED_SCRIPT}
                     COMMENT "Embedding ${file}")
  target_sources(${target} PRIVATE ${out})
endfunction()
