#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/cost/catalog.h"

namespace sched::cost {

// Reading the catalog from YAML (deploy/catalog/catalog.yaml shows the format and documents
// every field). Every error is INVALID_ARGUMENT (NOT_FOUND for a missing file) and names the
// source, the key path and the reason:
//   catalog.yaml: gpus[3].memory: expected a size like "24GiB", got "lots"

// Parses one catalog document; each entry passes ValidateGpuModel / ValidateProvider, the
// upgrades section ValidateUpgrades. An override file may leave out as_of, reference_gpu, either
// list and the upgrades section; an empty document (only comments) gives an empty CatalogData.
// `source` names the text in errors.
absl::StatusOr<CatalogData> ParseCatalogYaml(absl::string_view text, absl::string_view source);

// ParseCatalogYaml of a file's contents, the path as the source.
absl::StatusOr<CatalogData> ReadCatalogFile(const std::string& path);

// The catalog in `base_path` with each override file merged over it in order
// (MergeCatalogData), then checked as a whole (Catalog::Create). An error of the whole names
// every file it came from.
absl::StatusOr<Catalog> LoadCatalog(const std::string& base_path,
                                    const std::vector<std::string>& override_paths = {});

// A byte size: a number and a unit, B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers
// of 1024), ignoring case; a plain integer is bytes. INVALID_ARGUMENT (the reason only) for
// anything else, for negatives and for sizes past int64.
absl::StatusOr<int64_t> ParseCatalogSize(absl::string_view text);

}  // namespace sched::cost
