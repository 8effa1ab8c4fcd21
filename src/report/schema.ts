// The report's JSON Schema (schema/report.schema.json, the source of truth for its shape) and a check
// against it: a report bake writes or pushes that does not validate is a bug, said as such.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { BakeError } from '../util/errors.js';

export const reportSchemaPath = fileURLToPath(new URL('../../schema/report.schema.json', import.meta.url));

let validator: ValidateFunction | undefined;

export async function reportValidator(): Promise<ValidateFunction> {
  validator ??= new Ajv({ allErrors: true, strict: true }).compile(JSON.parse(await readFile(reportSchemaPath, 'utf8')) as object);
  return validator;
}

export async function validateReport(report: unknown): Promise<void> {
  const validate = await reportValidator();
  if (!validate(report)) {
    const errors = (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
    throw new BakeError(`internal: the build report does not match ${reportSchemaPath}: ${errors}`, 'failure');
  }
}
