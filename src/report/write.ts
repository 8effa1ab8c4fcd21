// Writing a report as files: <name>.report.json (with this run's timings) and <name>.report.html.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import { prettyJson } from '../util/json.js';
import { renderHtml } from './html.js';
import type { BakeReport } from './model.js';
import { validateReport } from './schema.js';

export async function writeReport(report: BakeReport, dir: string, name: string): Promise<{ json: string; html: string }> {
  await validateReport(report);
  const out = resolve(dir);
  await mkdir(out, { recursive: true });
  const json = join(out, `${name}.report.json`);
  const html = join(out, `${name}.report.html`);
  await writeFileAtomic(json, prettyJson(report));
  await writeFileAtomic(html, await renderHtml(report));
  return { json, html };
}
