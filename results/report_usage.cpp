#include "results/report_usage.h"

#include <hdf5.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "common/error.h"

namespace moelab::results::report {
namespace {

// Closes an HDF5 handle when it goes out of scope.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0) close(id);
  }
};

std::string string_attr(hid_t obj, const char* name, const std::string& path) {
  if (H5Aexists(obj, name) <= 0) throw InputError(path, std::string("attribute \"") + name + "\" is missing");
  Handle a{H5Aopen(obj, name, H5P_DEFAULT), H5Aclose};
  Handle type{H5Aget_type(a.id), H5Tclose};
  if (H5Tget_class(type.id) != H5T_STRING || H5Tis_variable_str(type.id) > 0)
    throw InputError(path, std::string("attribute \"") + name + "\" is not a fixed-length string");
  std::string buf(H5Tget_size(type.id) + 1, '\0');
  if (H5Aread(a.id, type.id, buf.data()) < 0) throw InputError(path, std::string("cannot read attribute \"") + name + "\"");
  return buf.c_str();
}

int64_t int_attr(hid_t obj, const char* name, const std::string& path) {
  if (H5Aexists(obj, name) <= 0) throw InputError(path, std::string("attribute \"") + name + "\" is missing");
  Handle a{H5Aopen(obj, name, H5P_DEFAULT), H5Aclose};
  int64_t v = 0;
  if (H5Aread(a.id, H5T_NATIVE_INT64, &v) < 0) throw InputError(path, std::string("attribute \"") + name + "\" is not an integer");
  return v;
}

UsageSet read_one(const std::string& path) {
  Handle file{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (file.id < 0) throw InputError(path, "not an HDF5 statistics file");
  UsageSet u;
  u.num_tokens = int_attr(file.id, "num_tokens", path);
  u.experts_per_token = int_attr(file.id, "experts_per_token", path);
  std::stringstream layers(string_attr(file.id, "moe_layers", path));
  for (std::string l; std::getline(layers, l, ',');) {
    char* end = nullptr;
    const long long layer = std::strtoll(l.c_str(), &end, 10);
    if (l.empty() || *end != '\0') throw InputError(path, "attribute \"moe_layers\": \"" + l + "\" is not a layer index");
    char name[48];
    std::snprintf(name, sizeof name, "layer_%03lld/tokens_E", layer);
    if (H5Lexists(file.id, name, H5P_DEFAULT) <= 0)
      throw InputError(path, std::string("dataset \"") + name + "\" is missing");
    Handle ds{H5Dopen2(file.id, name, H5P_DEFAULT), H5Dclose};
    Handle space{H5Dget_space(ds.id), H5Sclose};
    hsize_t dims[2] = {0, 0};
    if (H5Sget_simple_extent_ndims(space.id) != 1) throw InputError(path, std::string("dataset \"") + name + "\" is not 1-D");
    H5Sget_simple_extent_dims(space.id, dims, nullptr);
    std::vector<int64_t> v(dims[0]);
    if (H5Dread(ds.id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
      throw InputError(path, std::string("cannot read dataset \"") + name + "\"");
    u.layers.push_back(layer);
    u.tokens.push_back(std::move(v));
  }
  return u;
}

}  // namespace

std::vector<UsageSet> read_usage(const std::string& results_dir, const SweepResults& r) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors are ours to report, in one line
  std::vector<UsageSet> out;
  for (const auto& job : r.jobs) {
    if (job.kind != "calibrate" || job.state != "done") continue;
    const std::string path = (std::filesystem::path(results_dir) / job.output).string();
    if (!std::filesystem::exists(path)) throw InputError(path, "missing, though the job's record says done");
    UsageSet u = read_one(path);
    u.model = job.args.size() > 1 ? job.args[1] : "";
    u.calibration = r.calibration_of(job);
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace moelab::results::report
