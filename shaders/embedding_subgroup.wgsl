// The embedding gradient with one subgroup per (table row, block of columns), compiled after
// embedding.wgsl (params, bindings, id_of) only where the device has subgroups.
//
// embedding_grad packs each chunk's matching tokens through a prefix sum in workgroup memory, two
// barriers per step; on a software adapter each barrier is a switch between the workgroup's
// subgroups, and those switches are most of its time. Here a workgroup is one subgroup of SG = 8
// lanes: the lanes test 8 tokens at once, a ballot gives the matches as bits, and every lane adds
// its COLS columns of each match, tokens in order, with no workgroup memory and no barrier.
// Deterministic like embedding_grad: each (v, j) is summed by one lane in token order. The
// launcher uses it only where the adapter's smallest subgroup holds SG lanes.
// Grid: ceil(dim / (SG·COLS)) workgroups per table row, rows slowest (2-D past the limit).

const SG: u32 = 8u;
// Columns per lane: lane l owns columns base + l·COLS ..
const COLS: u32 = 4u;

@compute @workgroup_size(SG)
fn embedding_grad_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    let blocks = (p.dim + SG * COLS - 1u) / (SG * COLS);
    let v = g / blocks;
    // Uniform over the subgroup, so the ballots below stay in uniform control flow.
    if v >= p.vocab {
        return;
    }
    let j0 = (g % blocks) * SG * COLS + lane * COLS;
    var acc = vec4<f32>();
    for (var c = 0u; c < p.tokens; c += SG) {
        let t = c + lane;
        let hit = t < p.tokens && id_of(t) == v;
        var bits = subgroupBallot(hit).x;
        while bits != 0u {
            let row = (c + countTrailingZeros(bits)) * p.dim;
            bits &= bits - 1u;
            for (var k = 0u; k < COLS; k++) {
                if j0 + k < p.dim {
                    acc[k] += dout[row + j0 + k];
                }
            }
        }
    }
    for (var k = 0u; k < COLS; k++) {
        if j0 + k < p.dim {
            dtable[v * p.dim + j0 + k] = acc[k];
        }
    }
}
