// education.hpp — the message bodies of the education example, shared by every role.
// Each is a plain struct packed as a msgpack map (field names on the wire), so a
// Python or Go service can read it with its own msgpack library.
#pragma once

#include <cstdint>
#include <map>
#include <msgpack.hpp>
#include <string>

namespace education {

// user.register (web → registration worker, through zmqkit-queue)
struct registration {
  std::string email;
  std::string name;
  MSGPACK_DEFINE_MAP(email, name);
};

// user.registered (the reply)
struct account {
  std::string email;
  std::string account_id;
  MSGPACK_DEFINE_MAP(email, account_id);
};

// course.subscribed (published by the web front). It carries the course's
// subscriber totals after this subscription, so the last value of the type —
// what a late joiner gets from the snapshot — is the whole current state.
struct course_subscription {
  std::string email;
  std::string course;
  std::map<std::string, std::int64_t> totals;  // course → subscribers
  MSGPACK_DEFINE_MAP(email, course, totals);
};

// review.score (ventilator → scoring worker)
struct review {
  std::string course;
  std::int64_t stars = 0;  // 1..5
  std::string text;
  MSGPACK_DEFINE_MAP(course, stars, text);
};

// review.scored (scoring worker → sink)
struct review_score {
  std::string course;
  double score = 0;  // 0..5, stars adjusted by the text
  MSGPACK_DEFINE_MAP(course, score);
};

}  // namespace education
