// Envelope codec speed: zmqkit's encode, decode and decode_view for a 64-byte
// body, beside msgpack-c's generic path (pack a tuple; unpack to an object tree
// and convert) on the very same envelope, in one run.
//   build/bench/envelope_bench [iterations]
#include <zmqkit/envelope.hpp>

#include "bench_util.hpp"

#include <cstdlib>
#include <functional>

using namespace zmqkit;
using namespace zmqkit::bench;

namespace {

// The generic representation: the nine fields as msgpack-c types.
struct generic_envelope {
  int version;
  std::string type;
  int priority;
  msgpack::type::ext timestamp;
  std::uint64_t ttl_ms;
  msgpack::type::raw_ref id;
  msgpack::type::raw_ref correlation_id;
  std::map<std::string, std::string> headers;
  msgpack::type::raw_ref body;
  MSGPACK_DEFINE(version, type, priority, timestamp, ttl_ms, id, correlation_id, headers, body);
};

double ns_per_op(std::size_t iterations, const std::function<void()>& op) {
  for (std::size_t i = 0; i < iterations / 10; ++i) op();  // warm up
  const auto start = bench_clock::now();
  for (std::size_t i = 0; i < iterations; ++i) op();
  return std::chrono::duration<double, std::nano>(bench_clock::now() - start).count() /
         static_cast<double>(iterations);
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t iterations = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2'000'000;

  envelope env = make_envelope("order.created");
  env.body.assign(64, '\x2a');
  env.ttl = std::chrono::milliseconds(5000);
  env.correlation_id = message_id::generate();
  const zmq::message_t frame = encode(env);
  const std::string_view bytes = as_string_view(frame);

  // msgpack-c generic encode: the same nine fields through msgpack::packer.
  std::int64_t seconds = env.timestamp.time_since_epoch().count() / 1'000'000'000;
  std::uint32_t nanos = static_cast<std::uint32_t>(env.timestamp.time_since_epoch().count() % 1'000'000'000);
  char ts[8];
  const std::uint64_t packed_ts = (std::uint64_t{nanos} << 34) | static_cast<std::uint64_t>(seconds);
  for (int i = 0; i < 8; ++i) ts[i] = static_cast<char>(packed_ts >> (56 - 8 * i));
  const auto generic_encode = [&] {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> pk(buffer);
    pk.pack_array(9);
    pk.pack(1);
    pk.pack(env.type);
    pk.pack(env.priority);
    pk.pack_ext(8, -1);
    pk.pack_ext_body(ts, 8);
    pk.pack(static_cast<std::uint64_t>(env.ttl.count()));
    pk.pack_bin(16);
    pk.pack_bin_body(reinterpret_cast<const char*>(env.id.bytes.data()), 16);
    pk.pack_bin(16);
    pk.pack_bin_body(reinterpret_cast<const char*>(env.correlation_id->bytes.data()), 16);
    pk.pack(std::map<std::string, std::string>(env.headers.begin(), env.headers.end()));
    pk.pack_bin(static_cast<std::uint32_t>(env.body.size()));
    pk.pack_bin_body(env.body.data(), static_cast<std::uint32_t>(env.body.size()));
    zmq::message_t out(buffer.data(), buffer.size());  // into a frame, as encode() produces
    do_not_optimize(out);
  };
  const auto generic_decode = [&] {
    msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    generic_envelope g = handle.get().as<generic_envelope>();
    do_not_optimize(g);
  };

  const double encode_ns = ns_per_op(iterations, [&] {
    zmq::message_t out = encode(env);
    do_not_optimize(out);
  });
  const double decode_ns = ns_per_op(iterations, [&] {
    envelope e = decode(bytes);
    do_not_optimize(e);
  });
  const double view_ns = ns_per_op(iterations, [&] {
    envelope_view v = decode_view(bytes);
    do_not_optimize(v);
  });
  const double generic_encode_ns = ns_per_op(iterations, generic_encode);
  const double generic_decode_ns = ns_per_op(iterations, generic_decode);

  std::printf("envelope codec, 64-byte body, %zu-byte frame, %zu iterations\n", frame.size(), iterations);
  std::printf("  encode       %7.1f ns/op (target <= 100)\n", encode_ns);
  std::printf("  decode       %7.1f ns/op\n", decode_ns);
  std::printf("  decode_view  %7.1f ns/op (target <= 150)\n", view_ns);
  std::printf("  msgpack-c generic encode %7.1f ns/op, decode (object + convert) %7.1f ns/op\n",
              generic_encode_ns, generic_decode_ns);
  // Ratio here is zmqkit / generic time: lower is better, target <= 1/3 (3x faster).
  report("encode vs msgpack-c generic encode", "ns/op", encode_ns, generic_encode_ns, 1.0 / 3, false);
  report("decode_view vs msgpack-c generic decode", "ns/op", view_ns, generic_decode_ns, 1.0 / 3, false);
  report("decode (owning) vs msgpack-c generic decode", "ns/op", decode_ns, generic_decode_ns, 1.0, false);
  return 0;
}
