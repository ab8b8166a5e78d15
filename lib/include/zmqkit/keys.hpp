// zmqkit/keys.hpp — CURVE keypairs on disk.
//
//   ```cpp
//   auto pair = zmqkit::generate_keypair();
//   zmqkit::save_keypair(pair, "keys/queue");        // keys/queue.key (0600), keys/queue.pub (0644)
//   // ... on the server:
//   zmqkit::socket_options server;
//   server.security = zmqkit::load_curve_server("keys/queue.key");
//   // ... on a client, given the server's .pub:
//   zmqkit::socket_options client;
//   client.security = zmqkit::load_curve_client("keys/client.key", "keys/queue.pub");
//   ```
//
// File format: text, one 40-character Z85 key on its own line; blank lines and
// lines starting with '#' are comments. A secret key file holds only the secret
// key (the public key is derived from it). Loading refuses, with
// zmqkit::error{errc::security} naming the file, a file that is missing, not a
// regular file, malformed, or (secret files) readable or writable by group or
// others — like ssh, a secret that others could read is not a secret.
#pragma once

#include <filesystem>
#include <string>
#include <zmqkit/error.hpp>
#include <zmqkit/socket_options.hpp>

namespace zmqkit {

struct curve_keypair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// Returns: a fresh keypair (zmq_curve_keypair).
// Throws: zmqkit::error{errc::security} when libzmq was built without CURVE.
curve_keypair generate_keypair();

// Returns: the public key belonging to a Z85 secret key.
// Throws: zmqkit::error{errc::security} when `secret_key` is not a valid Z85 key.
std::string public_key_of(const std::string& secret_key);

// Returns: whether `key` is a 40-character Z85 string that decodes to 32 bytes.
bool is_z85_key(std::string_view key) noexcept;

// Writes `stem`.key (mode 0600) and `stem`.pub (mode 0644). Each file is written
// to a temporary file with its final mode from the start, then linked into place,
// so a secret is never visible with a wider mode and a reader never sees half a file.
// Throws: zmqkit::error{errc::security} when a file exists (unless `overwrite`) or
//         cannot be written.
void save_keypair(const curve_keypair& pair, const std::filesystem::path& stem, bool overwrite = false);

// Writes one public key file (mode 0644), e.g. into an allow-list directory.
void save_public_key(const std::string& public_key, const std::filesystem::path& file,
                     bool overwrite = false);

// Returns: the keypair whose secret key is stored in `secret_file`.
// Throws: zmqkit::error{errc::security} (field = the path) when the file is missing,
//         not a regular file, malformed, or group/other-accessible ("too open").
curve_keypair load_secret_key(const std::filesystem::path& secret_file);

// Returns: the Z85 public key stored in `public_file`.
// Throws: zmqkit::error{errc::security} when the file is missing or malformed.
std::string load_public_key(const std::filesystem::path& public_file);

// Convenience: security settings read from key files.
curve_server load_curve_server(const std::filesystem::path& secret_file, std::string zap_domain = "zmqkit");
curve_client load_curve_client(const std::filesystem::path& secret_file,
                               const std::filesystem::path& server_public_file);

}  // namespace zmqkit
