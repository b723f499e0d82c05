#pragma once

#include "server/cost/catalog.h"

namespace sched::cost::testing {

// A small catalog for tests: three GPUs (reference a100-80gb), two providers, and upgrades
// (RAM at $4/GiB in 64 and 128 GiB kits, two GPUs at most).
inline CatalogData SmallCatalogData() {
  CatalogData d;
  d.as_of = "2026-11";
  d.reference_gpu = "a100-80gb";
  d.gpus = {
      {"rtx3080", {"NVIDIA GeForce RTX 3080"}, {"3080"}, 10240LL << 20, 0.3, 320, 400},
      {"a100-80gb", {"NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"}, {"a100"}, 80LL << 30,
       1.0, 400, 12000},
      {"h100-80gb", {"NVIDIA H100 80GB HBM3"}, {"h100"}, 81559LL << 20, 2.0, 700, 25000},
  };
  Provider local;
  local.name = "local";
  local.local = true;
  local.electricity_usd_per_kwh = 0.17;
  Provider runpod;
  runpod.name = "runpod";
  runpod.offers_spot = true;
  runpod.spot_discount = 0.4;
  runpod.spot_preemptions_per_hour = 0.05;
  runpod.preemption_notice = absl::Seconds(5);
  runpod.provisioning_time = absl::Seconds(60);
  runpod.prices = {{"a100-80gb", {1.19, 1.89}, std::nullopt},
                   {"h100", {1.99, 2.99}, PriceRange{1.5, 1.5}}};
  d.providers = {local, runpod};
  d.upgrades = UpgradeData{4.0, {64LL << 30, 128LL << 30}, 2};
  return d;
}

}  // namespace sched::cost::testing
