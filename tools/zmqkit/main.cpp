// zmqkit — poke at ZMK/1 messaging from a terminal: send/recv (pipeline),
// pub/sub, request (request/reply with retries) and stats (zmqkit-queue admin).
// See README.md in this folder.
#include <iostream>
#include <zmqkit/error.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  using namespace zmqkit::tool;
  CLI::App app{"zmqkit: send, receive, publish, subscribe, request and inspect ZMK/1 messages"};
  app.name("zmqkit");
  app.set_version_flag("--version", "zmqkit 0.1.0");
  app.require_subcommand(1, 1);
  const command commands[] = {add_send(app), add_recv(app),    add_pub(app),
                              add_sub(app),  add_request(app), add_stats(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string where = "zmqkit";
    for (const auto* sub : app.get_subcommands()) where += " " + sub->get_name();
    std::cerr << where << ": " << e.what() << " (see " << where << " --help)\n";
    return exit_usage;
  }
  for (const auto& cmd : commands) {
    if (!cmd.app->parsed()) continue;
    const std::string where = "zmqkit " + cmd.app->get_name();
    try {
      return cmd.run();
    } catch (const failure& e) {
      std::cerr << where << ": " << e.what() << '\n';
      return e.exit_code();
    } catch (const zmqkit::error& e) {
      std::cerr << where << ": " << e.what() << '\n';
      return e.code() == zmqkit::errc::bad_config || e.code() == zmqkit::errc::security ? exit_usage
                                                                                        : exit_failure;
    } catch (const std::exception& e) {
      std::cerr << where << ": " << e.what() << '\n';
      return exit_failure;
    }
  }
  return exit_usage;
}
