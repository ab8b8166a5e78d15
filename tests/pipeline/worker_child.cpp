// A pipeline worker as a separate process, for the SIGKILL fault test.
// Usage: pipeline_worker_child VENTILATOR SINK WORK_MS CREDIT
#include <chrono>
#include <cstdlib>
#include <thread>
#include <zmqkit/pipeline/worker.hpp>

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  zmq::context_t ctx;
  zmqkit::pipeline::worker w(ctx, argv[1], argv[2], {.credit = static_cast<std::size_t>(std::atoi(argv[4]))});
  const auto work = std::chrono::milliseconds(std::atoi(argv[3]));
  for (;;) {  // runs until killed
    auto task = w.receive(std::chrono::milliseconds(100));
    if (!task) continue;
    std::this_thread::sleep_for(work);  // the task's work
    zmqkit::envelope result = zmqkit::make_reply(*task, "test.done");
    result.body = task->body;
    w.send_result(std::move(result));
  }
}
