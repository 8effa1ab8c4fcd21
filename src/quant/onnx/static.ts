export const STATIC_DEFAULT_OPS = ['Conv', 'MatMul', 'Gemm'];
export async function quantizeStatic(..._a: unknown[]): Promise<{ keptFloat: never[]; quantized: Record<string, number> }> { throw new Error('static: in progress'); }
