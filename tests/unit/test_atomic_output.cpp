// Outputs written under a temporary name and renamed when complete, also when the user
// spells the folder with a trailing slash ("--out pruned/", as the README does).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/common/atomic_output.h"

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("moelab_atomic_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(AtomicOutput, AFolderNamedWithATrailingSlashIsBuiltBesideItAndReplacedWhole) {
  const fs::path root = fresh_dir("slash");
  const fs::path out = root / "pruned";
  for (int round = 0; round < 2; ++round) {  // the second round replaces the first (overwrite)
    moelab::AtomicDir dir(fs::path(out.string() + "/"), /*overwrite=*/true);
    EXPECT_EQ(dir.path().parent_path(), root) << dir.path();  // a sibling, not inside the output
    std::ofstream(dir.path() / "config.json") << round;
    dir.commit();
  }
  std::ifstream in(out / "config.json");
  int v = -1;
  in >> v;
  EXPECT_EQ(v, 1);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(root)) entries += e.path() != out;
  EXPECT_EQ(entries, 0);  // no temporary or old folder left
  fs::remove_all(root);
}

TEST(AtomicOutput, AnExistingFolderIsRefusedWithoutOverwriteWhateverItsSpelling) {
  const fs::path root = fresh_dir("exists");
  fs::create_directories(root / "out");
  EXPECT_THROW(moelab::AtomicDir(fs::path((root / "out").string() + "/"), false), std::exception);
  fs::remove_all(root);
}
