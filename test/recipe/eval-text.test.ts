// verify.eval: a text file relative to the recipe or absolute; `default` or nothing is the built-in set.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readEvalText } from '../../src/recipe/eval-text.js';
import type { ModelSpec } from '../../src/recipe/types.js';
import { InputError } from '../../src/util/errors.js';

const model = (evalPath?: string) => ({ id: 'enc', verify: { eval: evalPath } }) as unknown as ModelSpec;

test('readEvalText reads a recipe-relative or an absolute file, and names models.<id>.verify.eval when it cannot', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-eval-'));
  try {
    const recipe = join(dir, 'recipes', 'r.yaml');
    await mkdir(join(dir, 'recipes', 'texts'), { recursive: true });
    await writeFile(join(dir, 'recipes', 'texts', 'a.txt'), 'relative\n');
    await writeFile(join(dir, 'b.txt'), 'absolute\n');
    assert.equal(await readEvalText(model('texts/a.txt'), recipe), 'relative\n');
    assert.equal(await readEvalText(model('../b.txt'), recipe), 'absolute\n');
    assert.equal(await readEvalText(model(join(dir, 'b.txt')), recipe), 'absolute\n');
    assert.equal(await readEvalText(model(undefined), recipe), undefined);
    assert.equal(await readEvalText(model('default'), recipe), undefined);
    for (const [bad, why] of [['texts/none.txt', /does not exist/], ['texts', /is not a file/], [join(dir, 'nope', 'x.txt'), /does not exist/]] as const) {
      await assert.rejects(readEvalText(model(bad), recipe), (e: unknown) => {
        assert.ok(e instanceof InputError);
        assert.equal(e.field, 'models.enc.verify.eval');
        assert.equal(e.file, recipe);
        assert.match(e.message, why);
        return true;
      });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
