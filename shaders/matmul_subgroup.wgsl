// Matrix-product variants built on subgroup operations, compiled after matmul.wgsl (whose
// params, bindings, tile loaders and stores they use) only on adapters with the SUBGROUP feature.

// ---------------------------------------------------------------------------------------------
// v5: v4's wide register blocks with the A loads shared over the subgroup. In v4 the 8 lanes of
// a workgroup hold the same 32 rows of C (each its own 16 columns), so all 8 load the same 8 A
// sub-tiles at every k-step: on a software adapter each of those loads is a loop over the lanes.
// Here lane l loads only sub-tile l (rows r0 + 4l..) and the others reach it by a subgroup
// shuffle, which on SIMD lanes is a register permute: A's loads per k-step drop from 8 tiles to
// one. The workgroup (8 invocations) must be one subgroup: the launcher offers v5 only where the
// adapter's smallest subgroup holds 8, and the start-up canary checks it.
// Grid (unfolded, see Params.m_tiles): [ceil(n / 128), ceil(m / 32), batch]; workgroup of 8 along n.

// Sub-tile `owner` of the subgroup, as loaded by lane `owner`.
fn a_from(mine: mat4x4<f32>, owner: u32) -> mat4x4<f32> {
    return mat4x4<f32>(
        subgroupShuffle(mine[0], owner),
        subgroupShuffle(mine[1], owner),
        subgroupShuffle(mine[2], owner),
        subgroupShuffle(mine[3], owner),
    );
}

@compute @workgroup_size(8)
fn matmul_v5_subgroup(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    // From the workgroup's id, so that the early return below is uniform over the subgroup, as
    // the shuffles after it require (WGSL's uniformity analysis checks it).
    let at = place(wid.y, wid.z, nwg.y);
    let c0 = gid.x * 16u;
    let r0 = at.x * 32u;
    let bz = at.y;
    if bz >= p.batch {
        return;
    }
    let ab = bz * p.a_stride;
    let bb = bz * p.b_stride;
    // acc<i><t>: rows r0 + 4i.., columns c0 + 4t...
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc02 = mat4x4<f32>();
    var acc03 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    var acc12 = mat4x4<f32>();
    var acc13 = mat4x4<f32>();
    var acc20 = mat4x4<f32>();
    var acc21 = mat4x4<f32>();
    var acc22 = mat4x4<f32>();
    var acc23 = mat4x4<f32>();
    var acc30 = mat4x4<f32>();
    var acc31 = mat4x4<f32>();
    var acc32 = mat4x4<f32>();
    var acc33 = mat4x4<f32>();
    var acc40 = mat4x4<f32>();
    var acc41 = mat4x4<f32>();
    var acc42 = mat4x4<f32>();
    var acc43 = mat4x4<f32>();
    var acc50 = mat4x4<f32>();
    var acc51 = mat4x4<f32>();
    var acc52 = mat4x4<f32>();
    var acc53 = mat4x4<f32>();
    var acc60 = mat4x4<f32>();
    var acc61 = mat4x4<f32>();
    var acc62 = mat4x4<f32>();
    var acc63 = mat4x4<f32>();
    var acc70 = mat4x4<f32>();
    var acc71 = mat4x4<f32>();
    var acc72 = mat4x4<f32>();
    var acc73 = mat4x4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        let b0 = b_tile(bb, k0, c0);
        let b1 = b_tile(bb, k0, c0 + 4u);
        let b2 = b_tile(bb, k0, c0 + 8u);
        let b3 = b_tile(bb, k0, c0 + 12u);
        let mine = a_tile(ab, r0 + 4u * lane, k0);
        let a0 = a_from(mine, 0u);
        acc00 += a0 * b0;
        acc01 += a0 * b1;
        acc02 += a0 * b2;
        acc03 += a0 * b3;
        let a1 = a_from(mine, 1u);
        acc10 += a1 * b0;
        acc11 += a1 * b1;
        acc12 += a1 * b2;
        acc13 += a1 * b3;
        let a2 = a_from(mine, 2u);
        acc20 += a2 * b0;
        acc21 += a2 * b1;
        acc22 += a2 * b2;
        acc23 += a2 * b3;
        let a3 = a_from(mine, 3u);
        acc30 += a3 * b0;
        acc31 += a3 * b1;
        acc32 += a3 * b2;
        acc33 += a3 * b3;
        let a4_ = a_from(mine, 4u);
        acc40 += a4_ * b0;
        acc41 += a4_ * b1;
        acc42 += a4_ * b2;
        acc43 += a4_ * b3;
        let a5 = a_from(mine, 5u);
        acc50 += a5 * b0;
        acc51 += a5 * b1;
        acc52 += a5 * b2;
        acc53 += a5 * b3;
        let a6 = a_from(mine, 6u);
        acc60 += a6 * b0;
        acc61 += a6 * b1;
        acc62 += a6 * b2;
        acc63 += a6 * b3;
        let a7 = a_from(mine, 7u);
        acc70 += a7 * b0;
        acc71 += a7 * b1;
        acc72 += a7 * b2;
        acc73 += a7 * b3;
    }
    let cb = bz * p.m * p.n;
    let bv0 = bias_run4(c0);
    let bv1 = bias_run4(c0 + 4u);
    let bv2 = bias_run4(c0 + 8u);
    let bv3 = bias_run4(c0 + 12u);
    // Stored as v4 stores them: one loop that stores row group 0 and moves the others up.
    for (var i = 0u; i < 8u; i++) {
        let r = r0 + 4u * i;
        store_tile(cb, r, c0, acc00, bv0);
        store_tile(cb, r, c0 + 4u, acc01, bv1);
        store_tile(cb, r, c0 + 8u, acc02, bv2);
        store_tile(cb, r, c0 + 12u, acc03, bv3);
        acc00 = acc10;
        acc01 = acc11;
        acc02 = acc12;
        acc03 = acc13;
        acc10 = acc20;
        acc11 = acc21;
        acc12 = acc22;
        acc13 = acc23;
        acc20 = acc30;
        acc21 = acc31;
        acc22 = acc32;
        acc23 = acc33;
        acc30 = acc40;
        acc31 = acc41;
        acc32 = acc42;
        acc33 = acc43;
        acc40 = acc50;
        acc41 = acc51;
        acc42 = acc52;
        acc43 = acc53;
        acc50 = acc60;
        acc51 = acc61;
        acc52 = acc62;
        acc53 = acc63;
        acc60 = acc70;
        acc61 = acc71;
        acc62 = acc72;
        acc63 = acc73;
    }
}
