// A zmqkit ventilator and sink in one process, for the spec's pipeline conformance peer
// (pipeline_peer.py plays the worker, written from docs/protocol.md alone).
//   spec_pipeline VENTILATOR_BIND SINK_BIND at-least-once|at-most-once DEADLINE_MS
// Prints "ventilator <endpoint>" and "sink <endpoint>", then for each line
//   batch N [PRIORITY]   submits N tasks "spec.task" (body: msgpack int 1..N) as one batch and
//                        polls both roles until the sink reports the batch complete, at most 10 s;
//                        prints "complete <results> <duplicates> <resent>" or "incomplete ...".
//   counters             polls the ventilator 100 ms, then prints "counters <dispatched> <resent> <bad_frames> <workers>"
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <zmqkit/pipeline/sink.hpp>
#include <zmqkit/pipeline/ventilator.hpp>

namespace pipeline = zmqkit::pipeline;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: spec_pipeline VENTILATOR_BIND SINK_BIND at-least-once|at-most-once DEADLINE_MS\n";
    return 2;
  }
  zmq::context_t ctx;
  const auto delivery = std::string(argv[3]) == "at-least-once" ? pipeline::delivery::at_least_once
                                                                 : pipeline::delivery::at_most_once;
  pipeline::ventilator vent(ctx, argv[1], {.delivery = delivery});
  pipeline::sink sink(ctx, argv[2],
                      {.ventilator_endpoint = vent.endpoint(),
                       .batch_deadline = std::chrono::milliseconds(std::stoi(argv[4]))});
  std::cout << "ventilator " << vent.endpoint() << "\nsink " << sink.endpoint() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    int count = 0, priority = 4;
    in >> command >> count >> priority;
    if (command == "counters") {
      for (int i = 0; i < 20; ++i) vent.poll(5ms);  // take in what the workers sent meanwhile
      const auto& c = vent.stats();
      std::cout << "counters " << c.dispatched << ' ' << c.resent << ' ' << c.bad_frames << ' '
                << vent.workers() << std::endl;
      continue;
    }
    if (command != "batch" || count < 1) {
      std::cout << "error " << line << std::endl;
      continue;
    }
    std::vector<zmqkit::envelope> tasks;
    for (int i = 1; i <= count; ++i) {
      tasks.push_back(zmqkit::make_envelope("spec.task", i));
      tasks.back().priority = static_cast<std::uint8_t>(priority);
    }
    const auto batch = vent.submit_batch(std::move(tasks));
    if (!batch) {
      std::cout << "refused" << std::endl;
      continue;
    }
    std::cout << "submitted " << batch->to_string() << std::endl;
    const auto end = std::chrono::steady_clock::now() + 10s;
    std::size_t results = 0;
    bool complete = false;
    while (std::chrono::steady_clock::now() < end) {
      vent.poll(5ms);
      // Non-blocking, as a program with its own loop drives it: the sink must still read its
      // control link (the id lists), or missing tasks are never reported.
      while (sink.receive(0ms)) ++results;
      const auto status = sink.status(*batch);
      if (status && status->state == pipeline::batch_state::complete) {
        complete = true;
        break;
      }
    }
    for (int i = 0; i < 20; ++i) vent.poll(5ms);  // let zmk.batch.done reach the ventilator
    std::cout << (complete ? "complete " : "incomplete ") << results << ' ' << sink.stats().duplicates << ' '
              << vent.stats().resent << std::endl;
  }
  return 0;
}
