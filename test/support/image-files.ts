// Reading what an image or a layer holds, for tests that check what ships.

import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import tar, { extract } from 'tar-stream';
import { connectEngine } from '../../src/image/docker/index.js';

/** Every file of a tar archive, by entry name. */
export async function tarFiles(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const ex = extract();
  const done = new Promise<void>((res, rej) => {
    ex.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => { out.set(h.name, Buffer.concat(chunks)); next(); });
    });
    ex.on('finish', res);
    ex.on('error', rej);
  });
  createReadStream(file).pipe(ex);
  await done;
  return out;
}

/** Every file under app/models/ (path without a leading ./) in every layer of an image (from `docker save`), with sizes. */
export async function modelFilesInImage(ref: string): Promise<{ path: string; size: number }[]> {
  const stream = (await connectEngine().getImage(ref).get()) as unknown as Readable;
  const out: { path: string; size: number }[] = [];
  const outer = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    outer.on('entry', (header, body, next) => {
      if (!header.name.endsWith('.tar')) {
        body.resume();
        body.on('end', next);
        return;
      }
      const inner = tar.extract();
      inner.on('entry', (h, b, n) => {
        const name = h.name.replace(/^\.?\//, '');
        if (name.startsWith('app/models/') && h.type === 'file') out.push({ path: name, size: h.size ?? 0 });
        b.resume();
        b.on('end', n);
      });
      inner.on('finish', next);
      inner.on('error', reject);
      body.pipe(inner);
    });
    outer.on('finish', resolve);
    outer.on('error', reject);
  });
  stream.pipe(outer);
  await done;
  return out;
}
