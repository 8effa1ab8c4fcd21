// Bytes of pickle-based files for the tests of src/lock/pickle.ts (made once with Python's pickle, lzma and
// bz2 modules; gzip and zlib variants are made in the tests with node:zlib), and an ONNX model whose
// weights are in an external-data file named model.bin.
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOnnx, writeOnnx } from '../../src/formats/onnx/index.js';
import { sharedModels } from './cli.js';

/** pickle.dumps({'weights': [1.0, 2.0]}, protocol=4); PICKLE2 is pickle.dumps([1], protocol=2); then PICKLE4 compressed as joblib can. */
export const PICKLE4 = Buffer.from('80049524000000000000007d948c0777656967687473945d9428473ff000000000000047400000000000000065732e', 'hex');
export const PICKLE2 = Buffer.from('80025d71004b01612e', 'hex');
export const LZMA_ALONE = Buffer.from('5d00008000ffffffffffffffff0040010e6fa5bb28c2f56524e6efb22d2eea5d17bfdaea52d26e3423a64168bb82782a7f47b0b543ffff8d160000', 'hex');
export const XZ = Buffer.from('fd377a585a000004e6d6b4460200210116000000742fe5a3e0002e00275d0040010e6fa5bb28c2f56524e6efb22d2eea5d17bfdaea52d26e3423a64168bb82782a7f4687000000001c9e6239cb1bed7f0001432fb49403501fb6f37d010000000004595a', 'hex');
export const BZ2 = Buffer.from('425a68393141592653599232c442000011dfe0dc8004410000c080000202e00c824004060040002000222023231037a9e5428001a064c85c6f16670d243b6c73237d00c4e761538457e2ee48a70a121246588840', 'hex');

/** A ZIP archive with stored (uncompressed) entries, as torch.save writes its checkpoints. */
export function storedZip(entries: [string, Uint8Array][]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(n.length, 28);
    cd.writeUInt32LE(offset, 42);
    locals.push(local, n, Buffer.from(data));
    central.push(cd, n);
    offset += 30 + n.length + data.length;
  }
  const dir = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

/** silero-vad (16 kHz, opset 15) saved with its tensors in external data `model.bin`: the bytes of both files. */
export async function onnxWithBinData(): Promise<{ onnx: Buffer; data: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-onnx-bin-'));
  try {
    await mkdir(dir, { recursive: true });
    const model = await readOnnx(join(sharedModels(), 'silero-vad', 'silero_vad_16k_op15.onnx'));
    await writeOnnx(model, join(dir, 'model.onnx'), { externalData: true, location: 'model.bin' });
    return { onnx: await readFile(join(dir, 'model.onnx')), data: await readFile(join(dir, 'model.bin')) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
