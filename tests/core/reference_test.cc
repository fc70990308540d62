#include "core/reference/reference.h"

#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(Reference, Basic) {
  auto r = ParseReference("alpine");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->String(), "docker.io/library/alpine:latest");
}

}  // namespace
}  // namespace regd
