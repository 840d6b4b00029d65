// alpa-auto-sharding on random number generation as JAX exports it: dropout from a key
// passed in (threefry2x32: shifts, xors, adds on uint32 counters, a rolled while loop
// of 5 rounds, `bitcast_convert` of the bits into floats) and `rng_bit_generator`. Every
// op has a rule (Shardy's, with our while-loop planning): the bits of the dropout mask
// are computed split like the activation they mask (each device generates its own
// slice of the counters), the keys stay replicated, and the run equals the
// single-device run bit for bit where bits are returned.
//
// RUN: alpa-opt %inputs/rng.mlir --verify-diagnostics --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge report=%t.json})' -o %t.mlir
// RUN: filecheck %s --input-file=%t.mlir
// RUN: filecheck %s --check-prefix=REPORT --input-file=%t.json
// RUN: alpa-run %t.mlir --reference --collectives | filecheck %s --check-prefix=EXEC

// The keys (the threefry key data, the rng_bit_generator state) are replicated.
// CHECK:       func.func public @main(
// CHECK-SAME:    %arg2: tensor<2xui32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>}
// CHECK-SAME:    %arg3: tensor<4xui32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>}
// The threefry rounds: a while loop carrying the two counter words, split like the
// [256, 128] activation the mask applies to.
// CHECK:       stablehlo.while
// CHECK:       } do {
// CHECK:         sdy.sharding_constraint %{{.*}} <@mesh, [{}, {"x", "y"}]> : tensor<256x128xui32>
// CHECK:         sdy.sharding_constraint %{{.*}} <@mesh, [{}, {"x", "y"}]> : tensor<256x128xui32>
// CHECK:       stablehlo.bitcast_convert %{{.*}} : (tensor<256x128xui32>) -> tensor<256x128xf32>
// CHECK-NEXT:  sdy.sharding_constraint %{{.*}} <@mesh, [{}, {"x", "y"}]> : tensor<256x128xf32>
// CHECK:       stablehlo.rng_bit_generator

// REPORT:      "loops": [
// REPORT-NEXT:   {
// REPORT-NEXT:     "carried": 9,
// REPORT-NEXT:     "trip_count": 5
// REPORT:      "replicated_fallback_ops": [],

// EXEC: collectives: all-reduce=0 all-gather=0 reduce-scatter=0 all-to-all=0 collective-permute=0
// EXEC: reference check: PASS (2 outputs match)
