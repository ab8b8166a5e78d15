// The zmqkit command line itself: help, version, usage errors.
#include <doctest/doctest.h>

#include <fstream>
#include <regex>

#include "tool.hpp"

using namespace zmqkit::test;

namespace {
const std::vector<std::string> subcommands = {"send", "recv", "pub", "sub", "request", "stats"};
}

TEST_CASE("every subcommand has --help, printed on stdout with exit 0") {
  for (const auto& sub : subcommands) {
    CAPTURE(sub);
    auto r = run_tool({sub, "--help"});
    CHECK(r.code == 0);
    CHECK(r.out.find("Usage: zmqkit " + sub) != std::string::npos);
    CHECK(r.out.find("--connect") != std::string::npos);
    CHECK(r.err.empty());
  }
  auto root = run_tool({"--help"});
  CHECK(root.code == 0);
  for (const auto& sub : subcommands) CHECK(root.out.find(sub) != std::string::npos);
}

TEST_CASE("an unknown flag is one line on stderr and exit 2") {
  for (const auto& sub : subcommands) {
    CAPTURE(sub);
    auto r = run_tool({sub, "-c", "tcp://127.0.0.1:1", "--no-such-flag"});
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find("--no-such-flag") != std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("usage errors exit 2") {
  SUBCASE("no subcommand") { CHECK(run_tool({}).code == 2); }
  SUBCASE("unknown subcommand") { CHECK(run_tool({"frobnicate"}).code == 2); }
  SUBCASE("no endpoint") {
    auto r = run_tool({"send", "-t", "a.b"});
    CHECK(r.code == 2);
    CHECK(r.err.find("--connect or --bind") != std::string::npos);
  }
  SUBCASE("no type") {
    auto r = run_tool({"send", "-c", "tcp://127.0.0.1:1"});
    CHECK(r.code == 2);
    CHECK(r.err.find("--type") != std::string::npos);
  }
  SUBCASE("priority out of range") {
    CHECK(run_tool({"send", "-c", "tcp://127.0.0.1:1", "-t", "a", "-p", "10"}).code == 2);
  }
  SUBCASE("malformed endpoint") {
    auto r = run_tool({"recv", "-c", "nonsense://x", "--timeout", "100"});
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
  }
  SUBCASE("bad header") {
    auto r = run_tool({"send", "-c", "tcp://127.0.0.1:1", "-t", "a", "-H", "novalue"});
    CHECK(r.code == 2);
    CHECK(r.err.find("KEY=VALUE") != std::string::npos);
  }
  SUBCASE("--json and --raw together") {
    CHECK(run_tool({"send", "-c", "tcp://127.0.0.1:1", "-t", "a", "-j", "1", "-r", "-"}).code == 2);
  }
}

TEST_CASE("--version prints the version") {
  auto r = run_tool({"--version"});
  CHECK(r.code == 0);
  CHECK(r.out.find("zmqkit") != std::string::npos);
}

TEST_CASE("the README's table and --help name the same socket for every subcommand") {
  // Issue 12: the README called `pub` an XPUB while its --help said PUB.
  std::ifstream readme(ZMQKIT_TOOL_README);
  REQUIRE(readme);
  std::map<std::string, std::string> documented;  // subcommand -> socket type, from "zmqkit pub ... (XPUB, ..."
  const std::regex row(R"(^zmqkit (\w+) .*\(([A-Z]+)[,) ])");
  for (std::string line; std::getline(readme, line);)
    if (std::smatch m; std::regex_search(line, m, row)) documented.emplace(m[1], m[2]);
  const std::regex help_socket(R"(\(([A-Z]+)[;) ])");
  for (const auto& sub : subcommands) {
    CAPTURE(sub);
    auto r = run_tool({sub, "--help"});
    std::smatch m;
    REQUIRE(std::regex_search(r.out, m, help_socket));
    REQUIRE(documented.contains(sub));
    CHECK(documented[sub] == m[1].str());
  }
}

TEST_CASE("the library roles decide connect or bind: a usage error otherwise") {
  // request (reqrep::client) and sub (pubsub::subscriber) only connect; send --ventilator binds one endpoint.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"request", "-b", "tcp://127.0.0.1:*", "-t", "a"},
        std::vector<std::string>{"sub", "-b", "tcp://127.0.0.1:*"},
        std::vector<std::string>{"send", "--ventilator", "-c", "tcp://127.0.0.1:1", "-t", "a"},
        std::vector<std::string>{"send", "--ventilator", "-b", "tcp://127.0.0.1:*", "-b", "tcp://127.0.0.1:*", "-t",
                                 "a"}}) {
    CAPTURE(args[0] + " " + args[1]);
    auto r = run_tool(args);
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
  }
}
