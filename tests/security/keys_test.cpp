// Key files: generated, saved with the right modes, and refused with a clear
// error when missing, malformed or too open.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <utility>  // before process.hpp, which uses std::exchange
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

void write(const fs::path& p, const std::string& content, unsigned mode) {
  std::ofstream(p) << content;
  fs::permissions(p, static_cast<fs::perms>(mode), fs::perm_options::replace);
}

// Returns: the error a load threw (fails the test if none was thrown).
zmqkit::error load_error(const fs::path& p, bool secret) {
  try {
    if (secret)
      zmqkit::load_secret_key(p);
    else
      zmqkit::load_public_key(p);
  } catch (const zmqkit::error& e) {
    return e;
  }
  FAIL("loaded " << p);
  return zmqkit::error(zmqkit::errc::security, "", "");
}

}  // namespace

TEST_CASE("a generated keypair is saved as NAME.key (0600) and NAME.pub (0644) and loads back") {
  zmqkit::test::temp_dir dir;
  const auto pair = zmqkit::generate_keypair();
  CHECK(zmqkit::is_z85_key(pair.public_key));
  CHECK(zmqkit::public_key_of(pair.secret_key) == pair.public_key);
  const auto old_umask = ::umask(0);  // the secret must be 0600 whatever the umask
  zmqkit::save_keypair(pair, dir / "queue");
  ::umask(old_umask);
  CHECK(mode_of(dir / "queue.key") == 0600);
  CHECK(mode_of(dir / "queue.pub") == 0644);
  const auto loaded = zmqkit::load_secret_key(dir / "queue.key");
  CHECK(loaded.secret_key == pair.secret_key);
  CHECK(loaded.public_key == pair.public_key);
  CHECK(zmqkit::load_public_key(dir / "queue.pub") == pair.public_key);
  // Only the final files remain: no temporary left behind.
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 2);
}

TEST_CASE("existing key files are not overwritten unless asked") {
  zmqkit::test::temp_dir dir;
  const auto first = zmqkit::generate_keypair();
  zmqkit::save_keypair(first, dir / "k");
  CHECK_THROWS_AS(zmqkit::save_keypair(zmqkit::generate_keypair(), dir / "k"), zmqkit::error);
  CHECK(zmqkit::load_secret_key(dir / "k.key").secret_key == first.secret_key);
  const auto second = zmqkit::generate_keypair();
  zmqkit::save_keypair(second, dir / "k", true);
  CHECK(zmqkit::load_secret_key(dir / "k.key").secret_key == second.secret_key);
  CHECK(mode_of(dir / "k.key") == 0600);
}

TEST_CASE("key files that cannot be used are refused with errc::security naming the file") {
  zmqkit::test::temp_dir dir;
  const auto pair = zmqkit::generate_keypair();

  SUBCASE("missing") {
    const auto e = load_error(dir / "absent.key", true);
    CHECK(e.code() == zmqkit::errc::security);
    CHECK(e.field() == (dir / "absent.key").string());
    CHECK(load_error(dir / "absent.pub", false).code() == zmqkit::errc::security);
  }
  SUBCASE("a directory, not a file") {
    fs::create_directory(dir / "d.pub");
    CHECK(std::string(load_error(dir / "d.pub", false).what()).find("not a regular file") !=
          std::string::npos);
  }
  SUBCASE("malformed: empty, short, not Z85, two keys") {
    for (const std::string content :
         {std::string(""), std::string("# only a comment\n"), std::string("abc\n"),
          std::string(40, '"') + "\n", pair.public_key + "\n" + pair.public_key + "\n"}) {
      write(dir / "bad.pub", content, 0644);
      const auto e = load_error(dir / "bad.pub", false);
      CHECK(e.code() == zmqkit::errc::security);
      CHECK(std::string(e.what()).find("malformed") != std::string::npos);
    }
  }
  SUBCASE("secret file readable by group or others is too open") {
    for (unsigned mode : {0640u, 0604u, 0660u, 0602u}) {
      write(dir / "s.key", pair.secret_key + "\n", mode);
      const auto e = load_error(dir / "s.key", true);
      CHECK(e.code() == zmqkit::errc::security);
      CHECK(std::string(e.what()).find("too open") != std::string::npos);
    }
    write(dir / "s.key", pair.secret_key + "\n", 0400);
    CHECK(zmqkit::load_secret_key(dir / "s.key").public_key == pair.public_key);
  }
}

TEST_CASE("comments and surrounding whitespace around the key are accepted") {
  zmqkit::test::temp_dir dir;
  const auto pair = zmqkit::generate_keypair();
  write(dir / "c.pub", "# alice's laptop\n\n  " + pair.public_key + "  \r\n", 0644);
  CHECK(zmqkit::load_public_key(dir / "c.pub") == pair.public_key);
}

TEST_CASE("security settings load from key files") {
  zmqkit::test::temp_dir dir;
  zmqkit::save_keypair(zmqkit::generate_keypair(), dir / "server");
  zmqkit::save_keypair(zmqkit::generate_keypair(), dir / "client");
  const auto server = zmqkit::load_curve_server(dir / "server.key");
  const auto client = zmqkit::load_curve_client(dir / "client.key", dir / "server.pub");
  CHECK(zmqkit::public_key_of(server.secret_key) == client.server_key);
  CHECK(server.zap_domain == "zmqkit");
  CHECK(zmqkit::public_key_of(client.secret_key) == client.public_key);
}

TEST_CASE("zmqkit-keygen writes NAME.key (0600) and NAME.pub and refuses to overwrite them") {
  const char* bin = std::getenv("ZMQKIT_BINARY_DIR");
  REQUIRE(bin != nullptr);
  const std::string keygen = std::string(bin) + "/tools/zmqkit-keygen";
  zmqkit::test::temp_dir dir;
  {
    zmqkit::test::child_process p({keygen, "--dir", dir.path().string(), "worker-1"});
    const auto st = p.wait(10s);
    REQUIRE(st);
    CHECK(WEXITSTATUS(*st) == 0);
  }
  CHECK(mode_of(dir / "worker-1.key") == 0600);
  CHECK(mode_of(dir / "worker-1.pub") == 0644);
  CHECK(zmqkit::load_secret_key(dir / "worker-1.key").public_key ==
        zmqkit::load_public_key(dir / "worker-1.pub"));
  zmqkit::test::child_process again({keygen, "--dir", dir.path().string(), "worker-1"});
  const auto st = again.wait(10s);
  REQUIRE(st);
  CHECK(WEXITSTATUS(*st) == 1);
}

TEST_CASE("apply() refuses a 40-character key that is not Z85 with a security error") {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::router);
  zmqkit::socket_options opts;
  opts.security = zmqkit::curve_server{.secret_key = std::string(40, '"')};
  try {
    zmqkit::apply(s, opts);
    FAIL("non-Z85 key accepted");
  } catch (const zmqkit::error& e) {
    CHECK(e.code() == zmqkit::errc::security);
  }
}
