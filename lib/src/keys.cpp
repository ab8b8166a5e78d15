#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>

namespace zmqkit {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
  throw error(errc::security, file.string(), file.string() + ": " + what);
}

std::string errno_text() { return std::strerror(errno); }

// Reads the one key line of a key file (comments and blank lines skipped).
std::string read_key_file(const fs::path& file, bool secret) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) fail(file, "cannot read key file: " + errno_text());
  if (!S_ISREG(st.st_mode)) fail(file, "not a regular file");
  if (secret && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail(file, std::string("secret key file is too open (mode ") + mode +
                   "); it must not be accessible by group or others: chmod 600 " + file.string());
  }
  std::ifstream in(file);
  if (!in) fail(file, "cannot read key file: " + errno_text());
  std::string line, key;
  int keys = 0;
  while (std::getline(in, line)) {
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const auto e = line.find_last_not_of(" \t\r");
    key = line.substr(b, e - b + 1);
    if (++keys > 1) fail(file, "malformed key file: more than one key line");
  }
  if (keys == 0) fail(file, "malformed key file: no key");
  if (!is_z85_key(key)) fail(file, "malformed key file: not a 40-character Z85 CURVE key");
  return key;
}

// Writes `content` to `file` with `mode`: a temporary file created with the mode
// (then fchmod, since the umask may have narrowed it), fsync, then link() into
// place (fails if the target exists) or rename() when overwriting.
void write_file_atomically(const fs::path& file, const std::string& content, mode_t mode, bool overwrite) {
  if (!overwrite && fs::exists(file)) fail(file, "already exists (refusing to overwrite)");
  std::random_device rd;
  const fs::path tmp = file.string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) fail(file, "cannot create: " + errno_text());
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t done = 0;
  while (ok && done < content.size()) {
    const auto n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const std::string write_error = ok ? "" : errno_text();
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    fail(file, "cannot write: " + write_error);
  }
  const int rc = overwrite ? ::rename(tmp.c_str(), file.c_str()) : ::link(tmp.c_str(), file.c_str());
  const std::string link_error = rc == 0 ? "" : errno_text();
  ::unlink(tmp.c_str());  // after link(): drops the temporary name; after rename(): already gone
  if (rc != 0) fail(file, "cannot create: " + link_error);
}

}  // namespace

bool is_z85_key(std::string_view key) noexcept {
  if (key.size() != 40) return false;
  std::string text(key);
  std::array<std::uint8_t, 32> raw{};
  return zmq_z85_decode(raw.data(), text.c_str()) != nullptr;
}

curve_keypair generate_keypair() {
  std::array<char, 41> pub{}, sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0)
    throw error(errc::security, "", "cannot generate a CURVE keypair: libzmq built without CURVE");
  return {pub.data(), sec.data()};
}

std::string public_key_of(const std::string& secret_key) {
  if (!is_z85_key(secret_key))
    throw error(errc::security, "secret key", "secret key: not a 40-character Z85 CURVE key");
  std::array<char, 41> pub{};
  if (zmq_curve_public(pub.data(), secret_key.c_str()) != 0)
    throw error(errc::security, "secret key", "cannot derive the public key: libzmq built without CURVE");
  return pub.data();
}

void save_public_key(const std::string& public_key, const fs::path& file, bool overwrite) {
  if (!is_z85_key(public_key)) fail(file, "refusing to write a malformed public key");
  write_file_atomically(file, "# zmqkit CURVE public key (Z85)\n" + public_key + "\n", 0644, overwrite);
}

void save_keypair(const curve_keypair& pair, const fs::path& stem, bool overwrite) {
  if (!is_z85_key(pair.secret_key)) fail(stem, "refusing to write a malformed secret key");
  const fs::path secret_file = stem.string() + ".key";
  const fs::path public_file = stem.string() + ".pub";
  if (!overwrite && fs::exists(public_file)) fail(public_file, "already exists (refusing to overwrite)");
  write_file_atomically(
      secret_file, "# zmqkit CURVE secret key (Z85). Keep it secret: mode 0600.\n" + pair.secret_key + "\n",
      0600, overwrite);
  save_public_key(pair.public_key, public_file, overwrite);
}

curve_keypair load_secret_key(const fs::path& secret_file) {
  curve_keypair pair;
  pair.secret_key = read_key_file(secret_file, true);
  pair.public_key = public_key_of(pair.secret_key);
  return pair;
}

std::string load_public_key(const fs::path& public_file) { return read_key_file(public_file, false); }

curve_server load_curve_server(const fs::path& secret_file, std::string zap_domain) {
  return curve_server{.secret_key = load_secret_key(secret_file).secret_key,
                      .zap_domain = std::move(zap_domain)};
}

curve_client load_curve_client(const fs::path& secret_file, const fs::path& server_public_file) {
  auto pair = load_secret_key(secret_file);
  return curve_client{.public_key = std::move(pair.public_key),
                      .secret_key = std::move(pair.secret_key),
                      .server_key = load_public_key(server_public_file)};
}

}  // namespace zmqkit
