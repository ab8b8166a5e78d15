// zmqkit/pipeline/protocol.hpp — the pipeline's wire names, shared by the
// ventilator, worker and sink (and by peers in other languages).
//
// Tasks and results are one frame each, a ZMK/1 envelope. Tasks travel
// ventilator (ROUTER) → worker (DEALER) so the ventilator can address the
// worker that granted credit; results travel worker (PUSH) → sink (PULL).
// Control messages are envelopes whose types begin `zmk.`; see README.md.
#pragma once

#include <cstdint>
#include <string_view>

namespace zmqkit::pipeline {

namespace type {
inline constexpr std::string_view credit = "zmk.credit";                // worker → ventilator
inline constexpr std::string_view bye = "zmk.bye";                      // worker → ventilator
inline constexpr std::string_view sink_hello = "zmk.sink.hello";        // sink → ventilator
inline constexpr std::string_view batch_begin = "zmk.batch.begin";      // ventilator → sink
inline constexpr std::string_view batch_query = "zmk.batch.query";      // sink → ventilator
inline constexpr std::string_view batch_missing = "zmk.batch.missing";  // sink → ventilator
inline constexpr std::string_view batch_done = "zmk.batch.done";        // sink → ventilator
inline constexpr std::string_view batch_abandoned = "zmk.batch.abandoned";  // sink → ventilator
}  // namespace type

namespace header {
inline constexpr std::string_view credit = "zmk.credit";              // decimal: more tasks I can hold
inline constexpr std::string_view credit_reset = "zmk.credit.reset";  // decimal: my credit is now exactly n
inline constexpr std::string_view batch = "zmk.batch";                // batch id (UUID text)
inline constexpr std::string_view batch_size = "zmk.batch.size";      // decimal task count of the batch
}  // namespace header

// What happens to a task whose worker dies before its result reaches the sink.
enum class delivery {
  at_most_once,   // lost; the sink reports it missing, nothing is resent
  at_least_once,  // the ventilator keeps the task until its batch completes and resends what the sink
                  // reports missing; a task may then run more than once (the sink counts it once)
};

}  // namespace zmqkit::pipeline
