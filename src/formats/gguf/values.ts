// GGUF metadata value types (ggml docs/gguf.md): the numeric codes and the byte size of each scalar.

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

export type GgufScalarType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64' | 'i64' | 'f64';
export type GgufValueType = GgufScalarType | 'array';

export const VALUE_TYPE_CODES: Record<GgufValueType, number> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
};

export const VALUE_TYPE_BY_CODE: readonly GgufValueType[] = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];

/** Fixed byte size of a scalar; strings are 8 + length. */
export const SCALAR_BYTES: Record<Exclude<GgufScalarType, 'string'>, number> = {
  u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8,
};

export type GgufScalar = number | bigint | boolean | string;

/** An array value: scalars, or nested arrays (the format allows arrays of arrays). */
export interface GgufArray {
  itemType: GgufValueType;
  values: (GgufScalar | GgufArray)[];
}

export type GgufKv =
  | { key: string; type: GgufScalarType; value: GgufScalar }
  | { key: string; type: 'array'; value: GgufArray };

export interface GgufTensorInfo {
  name: string;
  /** ne[0] is the row length (fastest-varying), as ggml orders dims. */
  dims: number[];
  /** ggml type id. */
  type: number;
  /** Offset from the start of the data section (a multiple of the alignment). */
  offset: number;
}

/** Rounds `n` up to a multiple of `align`. */
export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}
