// zmqkit-keygen — generates a CURVE keypair into NAME.key (mode 0600) and NAME.pub.
//
//   zmqkit-keygen queue                 # ./queue.key, ./queue.pub
//   zmqkit-keygen --dir /etc/zmqkit alice
//   zmqkit-keygen --public-of queue.key # prints the public key of an existing secret key file
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <zmqkit/error.hpp>
#include <zmqkit/keys.hpp>

int main(int argc, char** argv) {
  CLI::App app{"Generate a zmqkit CURVE keypair: NAME.key (secret, mode 0600) and NAME.pub (public)"};
  std::string name, dir = ".", public_of;
  bool force = false;
  app.add_option("name", name, "key name: writes NAME.key and NAME.pub");
  app.add_option("-d,--dir", dir, "directory to write into")->capture_default_str();
  app.add_flag("-f,--force", force, "overwrite existing key files");
  app.add_option("--public-of", public_of, "print the public key of an existing secret key file and exit");
  app.set_version_flag("--version", "zmqkit-keygen 0.1.0");
  CLI11_PARSE(app, argc, argv);

  try {
    if (!public_of.empty()) {
      std::printf("%s\n", zmqkit::load_secret_key(public_of).public_key.c_str());
      return 0;
    }
    if (name.empty() || name.find('/') != std::string::npos) {
      std::fprintf(stderr, "zmqkit-keygen: give a key NAME (no '/'; use --dir for the directory)\n");
      return 2;
    }
    const auto stem = std::filesystem::path(dir) / name;
    const auto pair = zmqkit::generate_keypair();
    zmqkit::save_keypair(pair, stem, force);
    std::printf("secret key: %s.key (mode 0600)\npublic key: %s.pub\n%s\n", stem.c_str(), stem.c_str(),
                pair.public_key.c_str());
    return 0;
  } catch (const zmqkit::error& e) {
    std::fprintf(stderr, "zmqkit-keygen: %s\n", e.what());
    return 1;
  }
}
