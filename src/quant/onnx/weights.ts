// Weight quantization arithmetic with onnxruntime's semantics (quant_utils.py): the range always holds 0,
// symmetric ranges are centred, round half to even, clip to the type's (possibly reduced) range.

export type QType = 'int8' | 'uint8';

export interface QuantizedWeight {
  /** Quantized values, same element order as the input. */
  values: Int8Array | Uint8Array;
  /** One scale (per tensor) or one per channel along `axis`. */
  scales: Float32Array;
  zeroPoints: Int8Array | Uint8Array;
  axis?: number;
}

/** [qmin, qmax] as onnxruntime picks them (spec §1 weight ranges). */
export function qRange(type: QType, symmetric: boolean, reduceRange: boolean): [number, number] {
  if (type === 'int8') {
    if (reduceRange) return [-64, 64];
    return symmetric ? [-127, 127] : [-128, 127];
  }
  return reduceRange ? [0, 127] : [0, 255];
}

/** numpy's round: half to even. Math.round sends ties up, so a tie that landed on an odd value steps back. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

export function scaleAndZeroPoint(rmin: number, rmax: number, qmin: number, qmax: number, symmetric: boolean): { scale: number; zeroPoint: number } {
  rmin = Math.min(rmin, 0);
  rmax = Math.max(rmax, 0);
  if (symmetric) {
    const absmax = Math.max(Math.abs(rmin), Math.abs(rmax));
    rmin = -absmax;
    rmax = absmax;
  }
  let scale = Math.fround((rmax - rmin) / (qmax - qmin));
  // An all-zero tensor: onnxruntime falls back to scale 1 so dequantization stays exact.
  if (!(scale > 1.1754943508222875e-38)) scale = 1;
  const zeroPoint = symmetric ? roundHalfEven((qmin + qmax) / 2) : Math.min(qmax, Math.max(qmin, roundHalfEven(qmin - rmin / scale)));
  return { scale, zeroPoint };
}

function store(type: QType, n: number): Int8Array | Uint8Array {
  return type === 'int8' ? new Int8Array(n) : new Uint8Array(n);
}

/**
 * Quantizes `data` of shape `dims`; with `axis` set, one scale and zero point per slice along that axis.
 */
export function quantizeWeight(data: Float32Array, dims: number[], type: QType, opts: { symmetric: boolean; reduceRange: boolean; axis?: number }): QuantizedWeight {
  const [qmin, qmax] = qRange(type, opts.symmetric, opts.reduceRange);
  const axis = opts.axis;
  const channels = axis === undefined ? 1 : dims[axis]!;
  const inner = axis === undefined ? Math.max(1, data.length) : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const mins = new Float64Array(channels).fill(Infinity);
  const maxs = new Float64Array(channels).fill(-Infinity);
  // Element i belongs to channel floor(i / inner) % channels; walk it in runs of `inner` (no division per element).
  for (let start = 0, c = 0; start < data.length; start += inner, c = (c + 1) % channels) {
    let lo = mins[c]!, hi = maxs[c]!;
    const end = Math.min(data.length, start + inner);
    for (let i = start; i < end; i++) { const v = data[i]!; if (v < lo) lo = v; if (v > hi) hi = v; }
    mins[c] = lo;
    maxs[c] = hi;
  }
  const scales = new Float32Array(channels);
  const zeroPoints = store(type, channels);
  for (let c = 0; c < channels; c++) {
    const { scale, zeroPoint } = scaleAndZeroPoint(Number.isFinite(mins[c]!) ? mins[c]! : 0, Number.isFinite(maxs[c]!) ? maxs[c]! : 0, qmin, qmax, opts.symmetric);
    scales[c] = scale;
    zeroPoints[c] = zeroPoint;
  }
  const values = store(type, data.length);
  const put = (i: number, scale: number, zp: number) => {
    const x = Math.fround(data[i]! / scale);
    let q = Math.round(x);
    if (q - x === 0.5 && (q & 1) !== 0) q -= 1; // ties to even
    q += zp;
    values[i] = q < qmin ? qmin : q > qmax ? qmax : q;
  };
  if (inner === 1 && channels > 1) {
    // Channels on the last axis (MatMul B columns): rows of `channels` values.
    for (let row = 0; row < data.length; row += channels) for (let c = 0; c < channels; c++) put(row + c, scales[c]!, zeroPoints[c]!);
  } else {
    for (let start = 0, c = 0; start < data.length; start += inner, c = (c + 1) % channels) {
      const scale = scales[c]!, zp = zeroPoints[c]!;
      const end = Math.min(data.length, start + inner);
      for (let i = start; i < end; i++) put(i, scale, zp);
    }
  }
  return { values, scales, zeroPoints, axis };
}

/** Activation range -> uint8 asymmetric scale/zero point, as DynamicQuantizeLinear and static MinMax do. */
export function activationParams(rmin: number, rmax: number, type: QType = 'uint8', symmetric = false): { scale: number; zeroPoint: number } {
  const [qmin, qmax] = type === 'uint8' ? [0, 255] : symmetric ? [-127, 127] : [-128, 127];
  return scaleAndZeroPoint(rmin, rmax, qmin, qmax, symmetric);
}
