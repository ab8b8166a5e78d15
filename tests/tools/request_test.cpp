// `zmqkit request` against a fake request/reply server (a ROUTER in this process).
#include <doctest/doctest.h>

#include <support/temp_dir.hpp>
#include <sys/stat.h>
#include <zmqkit/keys.hpp>
#include <zmqkit/socket_options.hpp>
#include <zmqkit/zap_authenticator.hpp>

#include "fake_peers.hpp"
#include "tool.hpp"

using namespace zmqkit::test;
using zmqkit::envelope;

TEST_CASE("request prints the reply, matched to the request's id") {
  zmq::context_t ctx;
  fake_server server(ctx, [](const envelope& req, int) {
    return zmqkit::make_reply(req, "order.accepted", std::map<std::string, int>{{"ok", 1}});
  });
  auto r =
      run_tool({"request", "-c", server.endpoint(), "-t", "order.create", "-p", "8", "-j", R"({"sku":"x"})"});
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());
  auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 1);
  auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].type == "order.create");
  CHECK(requests[0].priority == 8);
  CHECK(!requests[0].header("zmk.attempt"));
  CHECK(lines[0]["type"] == "order.accepted");
  CHECK(lines[0]["correlation_id"] == requests[0].id.to_string());
  CHECK(lines[0]["body"] == json{{"ok", 1}});
}

TEST_CASE("request retries a silent server with the same id and zmk.attempt") {
  zmq::context_t ctx;
  fake_server server(ctx, [](const envelope& req, int nth) -> std::optional<envelope> {
    if (nth < 3) return std::nullopt;  // the first two attempts go unanswered
    return zmqkit::make_reply(req, "pong");
  });
  auto r = run_tool(
      {"request", "-c", server.endpoint(), "-t", "ping", "--timeout", "300", "--retries", "3", "-v"});
  REQUIRE(r.code == 0);
  CHECK(json_lines(r.out).at(0)["type"] == "pong");
  auto requests = server.requests();
  REQUIRE(requests.size() == 3);
  CHECK(requests[1].id == requests[0].id);
  CHECK(requests[2].id == requests[0].id);
  CHECK(requests[1].header("zmk.attempt") == "1");
  CHECK(requests[2].header("zmk.attempt") == "2");
  CHECK(count_lines(r.err) == 2);  // --verbose: one line per retry
}

TEST_CASE("request ignores a reply to another request") {
  zmq::context_t ctx;
  // Answers the first attempt with a reply correlated to some other id, the retry correctly.
  std::atomic<int> calls{0};
  router_peer server(ctx, [&](const std::vector<std::string>& body) {
    auto req = zmqkit::decode(body.at(1));
    auto reply = zmqkit::make_reply(req, "right");
    if (calls++ == 0) reply.correlation_id = zmqkit::message_id::generate();
    return std::vector<std::string>{"", std::string(zmqkit::as_string_view(zmqkit::encode(reply)))};
  });
  auto r = run_tool({"request", "-c", server.endpoint(), "-t", "ping", "--timeout", "300"});
  REQUIRE(r.code == 0);
  CHECK(json_lines(r.out).at(0)["type"] == "right");
  CHECK(r.err.find("another request") != std::string::npos);
  CHECK(server.received() == 2);
}

TEST_CASE("an error reply prints its zmk.error and exits 3") {
  zmq::context_t ctx;
  fake_server server(ctx, [](const envelope& req, int) {
    return zmqkit::make_error_reply(req.id, zmqkit::reply_error::no_service, "no worker serves order.");
  });
  auto r = run_tool({"request", "-c", server.endpoint(), "-t", "order.create"});
  CHECK(r.code == 3);
  CHECK(one_line(r.err));
  CHECK(r.err.find("error reply: no-service: no worker serves order.") != std::string::npos);
  CHECK(r.out.empty());  // the library client hands back the code and reason, not the envelope
}

TEST_CASE("request to an unreachable endpoint gives up after its retries") {
  zmq::context_t ctx;
  const std::string ep = unused_tcp_endpoint();
  const auto start = std::chrono::steady_clock::now();
  auto r = run_tool({"request", "-c", ep, "-t", "ping", "--timeout", "200", "--retries", "2"});
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.code == 1);
  CHECK(one_line(r.err));
  CHECK(r.err.find("timeout: no reply within 200 ms after 3 attempts") != std::string::npos);
  CHECK(took >= 600ms);
  CHECK(r.out.empty());
}

TEST_CASE("request refuses invalid JSON before sending anything") {
  zmq::context_t ctx;
  fake_server server(ctx, [](const envelope& req, int) { return zmqkit::make_reply(req, "pong"); });
  auto r = run_tool({"request", "-c", server.endpoint(), "-t", "ping", "-j", "{'single': 'quotes'}"});
  CHECK(r.code == 2);
  CHECK(one_line(r.err));
  CHECK(r.err.find("invalid JSON") != std::string::npos);
  CHECK(server.requests().empty());
}

TEST_CASE("request speaks CURVE to a server given its public key") {
  char server_public[41], server_secret[41];
  REQUIRE(zmq_curve_keypair(server_public, server_secret) == 0);
  zmq::context_t ctx;
  fake_server server(
      ctx, [](const envelope& req, int) { return zmqkit::make_reply(req, "secret.pong"); },
      [&](zmq::socket_t& s) {
        zmqkit::apply(s, {.security = zmqkit::curve_server{.secret_key = server_secret}});
      });
  SUBCASE("with the key: encrypted, answered") {
    auto r = run_tool(
        {"request", "-c", server.endpoint(), "-t", "secret.ping", "--curve-server-key", server_public});
    REQUIRE(r.code == 0);
    CHECK(json_lines(r.out).at(0)["type"] == "secret.pong");
  }
  SUBCASE("without it: the handshake fails, nothing arrives") {
    auto r = run_tool(
        {"request", "-c", server.endpoint(), "-t", "secret.ping", "--timeout", "200", "--retries", "0"});
    CHECK(r.code == 1);
    CHECK(server.requests().empty());
  }
  SUBCASE("a malformed key is a usage error") {
    auto r =
        run_tool({"request", "-c", server.endpoint(), "-t", "secret.ping", "--curve-server-key", "short"});
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
  }
}

TEST_CASE("request discards an error reply that names no request, as the library client does") {
  // Issue 12: the tool's own retry loop accepted an uncorrelated error reply as the answer.
  zmq::context_t ctx;
  std::atomic<int> calls{0};
  router_peer server(ctx, [&](const std::vector<std::string>& body) {
    auto req = zmqkit::decode(body.at(1));
    auto reply = calls++ == 0 ? zmqkit::make_error_reply(std::nullopt, zmqkit::reply_error::bad_request, "?")
                              : zmqkit::make_reply(req, "right");
    return std::vector<std::string>{"", std::string(zmqkit::as_string_view(zmqkit::encode(reply)))};
  });
  auto r = run_tool({"request", "-c", server.endpoint(), "-t", "ping", "--timeout", "300"});
  CHECK(r.code == 0);
  REQUIRE(json_lines(r.out).size() == 1);
  CHECK(json_lines(r.out).at(0)["type"] == "right");
  CHECK(server.received() == 2);
}

TEST_CASE("request takes CURVE keys from key files, as zmqkit-queue does") {
  // Issue 12: keys were Z85 text on the command line only (the secret visible in ps), and a .pub
  // file begins with a comment line, so "$(cat server.pub)" is not the key.
  temp_dir dir;
  const auto server_keys = zmqkit::generate_keypair();
  const auto client_keys = zmqkit::generate_keypair();
  zmqkit::save_keypair(server_keys, dir / "server");
  zmqkit::save_keypair(client_keys, dir / "client");
  std::filesystem::create_directory(dir / "allowed");
  zmqkit::save_public_key(client_keys.public_key, dir / "allowed" / "client.pub");
  zmq::context_t ctx;
  // Only the client key on the allow-list is admitted: the secret key file is really ours.
  zmqkit::zap_authenticator zap(ctx, {.allow_dir = dir / "allowed"});
  fake_server server(
      ctx, [](const envelope& req, int) { return zmqkit::make_reply(req, "secret.pong"); },
      [&](zmq::socket_t& s) { zmqkit::apply(s, {.security = zmqkit::load_curve_server(dir / "server.key")}); });
  const std::string server_pub = (dir / "server.pub").string(), client_key = (dir / "client.key").string();
  SUBCASE("both files: encrypted, admitted, answered") {
    auto r = run_tool({"request", "-c", server.endpoint(), "-t", "secret.ping", "--curve-server-key-file",
                       server_pub, "--curve-secret-key-file", client_key});
    REQUIRE(r.code == 0);
    CHECK(json_lines(r.out).at(0)["type"] == "secret.pong");
  }
  SUBCASE("an ephemeral key is not on the allow-list: refused") {
    auto r = run_tool({"request", "-c", server.endpoint(), "-t", "secret.ping", "--curve-server-key-file",
                       server_pub, "--timeout", "300", "--retries", "0"});
    CHECK(r.code == 1);
    CHECK(server.requests().empty());
  }
  SUBCASE("a secret key file others can read is refused, naming the file") {
    ::chmod(client_key.c_str(), 0644);
    auto r = run_tool({"request", "-c", server.endpoint(), "-t", "secret.ping", "--curve-server-key-file",
                       server_pub, "--curve-secret-key-file", client_key});
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find(client_key) != std::string::npos);
  }
  SUBCASE("a missing key file is a usage error") {
    auto r = run_tool({"request", "-c", server.endpoint(), "-t", "secret.ping", "--curve-server-key-file",
                       (dir / "nope.pub").string()});
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
  }
}
