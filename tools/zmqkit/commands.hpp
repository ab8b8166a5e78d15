// The subcommands of the zmqkit tool: each registers itself on the root app
// and returns what runs it.
#pragma once

#include "common.hpp"

namespace zmqkit::tool {

command add_send(CLI::App& root);     // pipeline.cpp
command add_recv(CLI::App& root);     // pipeline.cpp
command add_pub(CLI::App& root);      // pubsub.cpp
command add_sub(CLI::App& root);      // pubsub.cpp
command add_request(CLI::App& root);  // request.cpp
command add_stats(CLI::App& root);    // stats.cpp

}  // namespace zmqkit::tool
