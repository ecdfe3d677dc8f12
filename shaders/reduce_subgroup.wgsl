// The reduction over an axis with one subgroup per output, compiled after reduce.wgsl (params,
// bindings, the fold and merge of each op) only where the device has subgroups.
//
// reduce_tree gives each output a workgroup and merges its invocations' partial results through
// workgroup memory, a barrier per halving; on a software adapter each barrier is a switch between
// the workgroup's subgroups. Here a workgroup is one subgroup of SG = 8 lanes: each lane folds
// every SG-th element of the row (`push`, as reduce_tree's invocations do), then lane l merges
// lane l + s's result for s = 4, 2, 1 (`merge`, by subgroup shuffles): no workgroup memory and no
// barrier. The launcher uses it only where the adapter's smallest subgroup holds SG lanes.
// Grid: one workgroup per output (2-D when outputs exceed the per-dimension limit).

const SG: u32 = 8u;

@compute @workgroup_size(SG)
fn reduce_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let out = wid.x + wid.y * nwg.x;
    // Uniform over the subgroup, so the shuffles below stay in uniform control flow.
    if out >= p.outer * p.inner {
        return;
    }
    let base = base_of(out);
    var acc = empty();
    for (var j = lane; j < p.n; j += SG) {
        acc = push(acc, x[base + j * p.inner], j);
    }
    for (var s = SG / 2u; s > 0u; s >>= 1u) {
        let other = Acc(subgroupShuffleDown(acc.v, s), subgroupShuffleDown(acc.i, s));
        if lane < s {
            acc = merge(acc, other);
        }
    }
    if lane == 0u {
        y[out] = finish(acc);
    }
}
