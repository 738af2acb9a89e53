#include "results/stats_file.h"

#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/common/error.h"

namespace moelab::results {
namespace {

constexpr int kSchemaVersion = 1;

// Dataset name, the LayerStats member, its stat group, its description.
struct Field {
  const char* name;
  at::Tensor LayerStats::*member;
  const std::string* group;
  const char* description;
  at::ScalarType dtype = at::kDouble;
  bool rows_are_experts = true;  // first dimension is E (checked on reading)
};

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      {"tokens_E", &LayerStats::tokens_E, &stat::kUsage, "tokens routed to the expert (top-k membership)", at::kLong},
      {"gate_sum_E", &LayerStats::gate_sum_E, &stat::kUsage, "sum of gate weights g_j(x) over routed tokens"},
      {"act_norm_sum_E", &LayerStats::act_norm_sum_E, &stat::kActNorms, "sum of ||a_j(x)||_2"},
      {"act_norm_sq_sum_E", &LayerStats::act_norm_sq_sum_E, &stat::kActNorms, "sum of ||a_j(x)||_2^2"},
      {"out_norm_sum_E", &LayerStats::out_norm_sum_E, &stat::kOutNorms, "sum of ||f_j(x)||_2"},
      {"gate_out_norm_sum_E", &LayerStats::gate_out_norm_sum_E, &stat::kOutNorms, "sum of g_j(x) ||f_j(x)||_2"},
      {"coactivation_EE", &LayerStats::coactivation_EE, &stat::kCoactivation,
       "tokens routed to both experts (diagonal: tokens_E)", at::kLong},
      {"token_bitmap_EW", &LayerStats::token_bitmap_EW, &stat::kTokenIds,
       "bit v%8 of byte v/8 set if token id v was routed to the expert", at::kByte},
      {"act_sum_EF", &LayerStats::act_sum_EF, &stat::kActMoments, "per-channel sum of a_j(x)"},
      {"act_sq_sum_EF", &LayerStats::act_sq_sum_EF, &stat::kActMoments, "per-channel sum of a_j(x)^2"},
      {"easyep_sum_E", &LayerStats::easyep_sum_E, &stat::kHiddenChange,
       "sum of g ||f|| max(0, 1 - cos(h_in, h_out))"},
      {"act_outliers_E", &LayerStats::act_outliers_E, &stat::kActOutliers,
       "activation values a_jc(x) outside mean_jc +- 3 std_jc (per-channel moments of the first pass)", at::kLong},
      {"grad_sq_norm_E", &LayerStats::grad_sq_norm_E, &stat::kGradients,
       "||G_j||^2, G_j the gradient of the mean next-token loss w.r.t. expert j's gate, up and down weights"},
      {"grad_gram_EE", &LayerStats::grad_gram_EE, &stat::kGradients, "<G_j, G_k>"},
      {"grad_channel_sum_EF", &LayerStats::grad_channel_sum_EF, &stat::kGradients,
       "per channel c: sum of the 3 D gradient values of gate row c, up row c, down column c"},
      {"grad_channel_sq_sum_EF", &LayerStats::grad_channel_sq_sum_EF, &stat::kGradients,
       "per channel c: sum of the squares of those values"},
      {"grad_outliers_E", &LayerStats::grad_outliers_E, &stat::kGradients,
       "gradient values outside their channel's mean +- 3 std", at::kLong},
      {"naee_subsets_SE", &LayerStats::naee_subsets_SE, &stat::kNaee, "candidate subsets of kept experts (1 = kept)",
       at::kByte, false},
      {"naee_loss_S", &LayerStats::naee_loss_S, &stat::kNaee,
       "sum over calibration tokens of ||Z(x) - Z_S(x)||^2 with only the subset's experts routable", at::kDouble,
       false},
      {"dense_out_sum_ED", &LayerStats::dense_out_sum_ED, &stat::kDenseOutputs,
       "sum over ALL calibration tokens x (routed to j or not) of f_j(x); mean = this / num_tokens"},
      {"gate_ratio_hist_B", &LayerStats::gate_ratio_hist_B, &stat::kGateRatios,
       "histogram of p_2(x) / p_1(x) (second over first router probability) over all tokens, bins of equal width "
       "over [0, 1]",
       at::kLong, false},
      {"power_sum_EVXX", &LayerStats::power_sum_EVXX, &stat::kPowerSums,
       "sum over routed tokens of g_j(x)^a ||v_j(x)||_2^p; [expert, v (0: a_j, 1: f_j), a, p], a and p indexing the "
       "file attribute power_exponents"},
      {"out_sum_ED", &LayerStats::out_sum_ED, &stat::kOutMoments,
       "per-channel sum over routed tokens of f_j(x), the expert output before gating"},
      {"out_sq_sum_ED", &LayerStats::out_sq_sum_ED, &stat::kOutMoments, "per-channel sum of f_j(x)^2"},
      {"out_max_E", &LayerStats::out_max_E, &stat::kOutMax,
       "largest of 0 and every value f_jc(x) over routed tokens x and channels c (signed; a maximum, not a sum)"},
  };
  return f;
}

hid_t h5_type(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return H5T_IEEE_F64LE;
    case at::kLong: return H5T_STD_I64LE;
    case at::kByte: return H5T_STD_U8LE;
    default: throw std::invalid_argument("stats: unsupported dtype");
  }
}
hid_t h5_native(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return H5T_NATIVE_DOUBLE;
    case at::kLong: return H5T_NATIVE_INT64;
    case at::kByte: return H5T_NATIVE_UINT8;
    default: throw std::invalid_argument("stats: unsupported dtype");
  }
}

void attr_string(hid_t obj, const char* name, const std::string& v) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, std::max<size_t>(v.size(), 1));
  H5Tset_strpad(type, H5T_STR_NULLTERM);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, type, v.empty() ? "" : v.c_str());
  H5Aclose(a);
  H5Sclose(space);
  H5Tclose(type);
}

void attr_int(hid_t obj, const char* name, int64_t v) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Sclose(space);
}

void attr_doubles(hid_t obj, const char* name, const std::vector<double>& v) {
  const hsize_t n = v.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_DOUBLE, v.data());
  H5Aclose(a);
  H5Sclose(space);
}

void write_dataset(hid_t group, const Field& f, const at::Tensor& t_in) {
  at::Tensor t = t_in.contiguous().cpu();
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (t.numel() >= 4096) {  // large statistics: chunked and compressed
    H5Pset_chunk(dcpl, int(dims.size()), dims.data());
    H5Pset_deflate(dcpl, 4);
  }
  hid_t d = H5Dcreate2(group, f.name, h5_type(t.scalar_type()), space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d < 0 || H5Dwrite(d, h5_native(t.scalar_type()), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0)
    throw InputError(f.name, "HDF5 write failed");
  std::string shape;
  for (size_t i = 0; i < dims.size(); ++i) shape += (i ? "," : "") + std::to_string(dims[i]);
  attr_string(d, "shape", "[" + shape + "]");
  attr_string(d, "dtype", t.scalar_type() == at::kDouble ? "float64" : t.scalar_type() == at::kLong ? "int64" : "uint8");
  attr_string(d, "group", *f.group);
  attr_string(d, "description", f.description);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
}

// Reading ---------------------------------------------------------------------------

struct Reader {
  std::string path;
  hid_t file = -1;

  std::string string_attr(hid_t obj, const char* name) const {
    if (H5Aexists(obj, name) <= 0) throw InputError(path, std::string("attribute \"") + name + "\" is missing");
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t type = H5Aget_type(a);
    std::string out;
    if (H5Tget_class(type) != H5T_STRING) throw InputError(path, std::string("attribute \"") + name + "\" is not a string");
    if (H5Tis_variable_str(type) > 0) {
      char* s = nullptr;
      hid_t mem = H5Tget_native_type(type, H5T_DIR_DEFAULT);
      H5Aread(a, mem, &s);
      out = s ? s : "";
      H5free_memory(s);
      H5Tclose(mem);
    } else {
      std::string buf(H5Tget_size(type) + 1, '\0');
      H5Aread(a, type, buf.data());
      out = buf.c_str();
    }
    H5Tclose(type);
    H5Aclose(a);
    return out;
  }
  int64_t int_attr(hid_t obj, const char* name) const {
    if (H5Aexists(obj, name) <= 0) throw InputError(path, std::string("attribute \"") + name + "\" is missing");
    int64_t v = 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) throw InputError(path, std::string("attribute \"") + name + "\" is not an integer");
    H5Aclose(a);
    return v;
  }
  std::vector<double> doubles_attr(hid_t obj, const char* name) const {
    if (H5Aexists(obj, name) <= 0) throw InputError(path, std::string("attribute \"") + name + "\" is missing");
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t space = H5Aget_space(a);
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    std::vector<double> v(size_t(std::max<hssize_t>(n, 0)));
    const bool ok = n > 0 && n < 64 && H5Aread(a, H5T_NATIVE_DOUBLE, v.data()) >= 0;
    H5Sclose(space);
    H5Aclose(a);
    if (!ok) throw InputError(path, std::string("attribute \"") + name + "\" is not a list of 1 to 63 numbers");
    return v;
  }
  at::Tensor dataset(hid_t group, const std::string& gname, const char* name, at::ScalarType dtype) const {
    const std::string where = gname + "/" + name;
    hid_t d = H5Dopen2(group, name, H5P_DEFAULT);
    if (d < 0) throw InputError(path, "dataset \"" + where + "\" is missing");
    hid_t space = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(std::max(rank, 0));
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    std::vector<int64_t> shape(dims.begin(), dims.end());
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (H5Dread(d, h5_native(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0)
      throw InputError(path, "dataset \"" + where + "\" cannot be read as " + c10::toString(dtype));
    H5Sclose(space);
    H5Dclose(d);
    return t;
  }
};

}  // namespace

const LayerStats& CalibrationStats::layer(int64_t index) const { return layers.at(size_t(index)); }

void write_stats(const CalibrationStats& st, const std::string& path) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  hid_t file = H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) throw InputError(path, "cannot create the HDF5 file");
  try {
    attr_int(file, "schema_version", kSchemaVersion);
    attr_string(file, "model", st.model);
    attr_string(file, "architecture", st.architecture);
    attr_string(file, "calibration", st.calibration);
    attr_string(file, "moelab_version", st.moelab_version);
    attr_int(file, "num_sequences", st.num_sequences);
    attr_int(file, "num_tokens", st.num_tokens);
    attr_int(file, "seq_len", st.seq_len);
    attr_int(file, "vocab_size", st.vocab_size);
    attr_int(file, "hidden_size", st.hidden_size);
    attr_int(file, "seed", int64_t(st.seed));
    attr_int(file, "world_size", st.world_size);
    attr_int(file, "experts_per_token", st.experts_per_token);
    attr_string(file, "router_normalisation", st.norm_topk_prob ? "softmax_topk_renormalised" : "softmax");
    std::string groups;
    for (const auto& g : st.collected) groups += (groups.empty() ? "" : ",") + g;
    attr_string(file, "collected", groups);
    if (st.collected.count(stat::kPowerSums)) attr_doubles(file, "power_exponents", st.power_exponents);
    std::string layer_list;
    for (const auto& ls : st.layers) layer_list += (layer_list.empty() ? "" : ",") + std::to_string(ls.layer);
    attr_string(file, "moe_layers", layer_list);
    for (const auto& ls : st.layers) {
      char name[32];
      std::snprintf(name, sizeof name, "layer_%03lld", static_cast<long long>(ls.layer));
      hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      attr_int(g, "layer", ls.layer);
      attr_int(g, "num_experts", ls.tokens_E.size(0));
      for (const auto& f : fields()) {
        const at::Tensor& t = ls.*(f.member);
        if (t.defined()) write_dataset(g, f, t);
      }
      H5Gclose(g);
    }
  } catch (...) {
    H5Fclose(file);
    std::filesystem::remove(tmp);
    throw;
  }
  if (H5Fclose(file) < 0) {
    std::filesystem::remove(tmp);
    throw InputError(path, "HDF5 close failed (disk full?)");
  }
  std::filesystem::rename(tmp, path);
}

CalibrationStats read_stats(const std::string& path, const std::set<std::string>& only) {
  if (!std::filesystem::exists(path)) throw InputError(path, "no such statistics file");
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors are ours to report, in one line
  Reader r{path};
  r.file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r.file < 0) throw InputError(path, "not an HDF5 file");
  struct Closer {
    hid_t f;
    ~Closer() { H5Fclose(f); }
  } closer{r.file};
  CalibrationStats st;
  if (r.int_attr(r.file, "schema_version") != kSchemaVersion)
    throw InputError(path, "schema_version " + std::to_string(r.int_attr(r.file, "schema_version")) +
                               " is not the supported " + std::to_string(kSchemaVersion));
  st.model = r.string_attr(r.file, "model");
  st.architecture = r.string_attr(r.file, "architecture");
  st.calibration = r.string_attr(r.file, "calibration");
  st.moelab_version = r.string_attr(r.file, "moelab_version");
  st.num_sequences = r.int_attr(r.file, "num_sequences");
  st.num_tokens = r.int_attr(r.file, "num_tokens");
  st.seq_len = r.int_attr(r.file, "seq_len");
  st.vocab_size = r.int_attr(r.file, "vocab_size");
  if (H5Aexists(r.file, "hidden_size") > 0) st.hidden_size = r.int_attr(r.file, "hidden_size");
  st.seed = uint64_t(r.int_attr(r.file, "seed"));
  st.world_size = r.int_attr(r.file, "world_size");
  st.experts_per_token = r.int_attr(r.file, "experts_per_token");
  st.norm_topk_prob = r.string_attr(r.file, "router_normalisation") == "softmax_topk_renormalised";
  std::stringstream groups(r.string_attr(r.file, "collected"));
  for (std::string g; std::getline(groups, g, ',');) st.collected.insert(g);
  if (st.collected.count(stat::kPowerSums)) st.power_exponents = r.doubles_attr(r.file, "power_exponents");
  std::stringstream layers(r.string_attr(r.file, "moe_layers"));
  for (std::string l; std::getline(layers, l, ',');) {
    LayerStats ls;
    ls.layer = std::stoll(l);
    char name[32];
    std::snprintf(name, sizeof name, "layer_%03lld", static_cast<long long>(ls.layer));
    hid_t g = H5Gopen2(r.file, name, H5P_DEFAULT);
    if (g < 0) throw InputError(path, std::string("group \"") + name + "\" is missing");
    const int64_t E = r.int_attr(g, "num_experts");
    for (const auto& f : fields()) {
      if (!st.collected.count(*f.group) || (!only.empty() && !only.count(*f.group))) continue;
      at::Tensor t = r.dataset(g, name, f.name, f.dtype);
      if (f.rows_are_experts && (t.dim() == 0 || t.size(0) != E))
        throw InputError(path, std::string(name) + "/" + f.name + " has " + std::to_string(t.dim() ? t.size(0) : 0) +
                                   " rows, but the layer has " + std::to_string(E) + " experts");
      ls.*(f.member) = t;
    }
    if (st.collected.count(stat::kPowerSums) && (only.empty() || only.count(stat::kPowerSums))) {
      const int64_t X = int64_t(st.power_exponents.size());
      if (ls.power_sum_EVXX.sizes() != at::IntArrayRef({E, 2, X, X}))
        throw InputError(path, std::string(name) + "/power_sum_EVXX is not [" + std::to_string(E) + ", 2, " +
                                   std::to_string(X) + ", " + std::to_string(X) + "] (experts, v, power_exponents^2)");
    }
    H5Gclose(g);
    st.layers.push_back(std::move(ls));
  }
  return st;
}

}  // namespace moelab::results
