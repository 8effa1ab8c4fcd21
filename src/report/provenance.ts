// The provenance of an image as an in-toto statement with a SLSA provenance v1 predicate
// (https://slsa.dev/spec/v1.0/provenance): the models as repo@commit with every file's digest and the
// calibration and eval data as resolved dependencies, the recipe's quantization and gates as external
// parameters, bake's and the toolchain's versions as the builder, the gate results with the report.
// Built from the reproducible report only (no times, no host), so the same build gives the same bytes.
import { sha256Bytes } from '../util/digest.js';
import { canonicalJson } from '../util/json.js';
import { withoutTimings, type BakeReport, type ModelReport } from './model.js';

export const IN_TOTO_STATEMENT = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE = 'https://slsa.dev/provenance/v1';
export const BUILD_TYPE = 'https://github.com/bake-dev/bake/blob/main/schema/report.schema.json#recipe-v1';

interface ResourceDescriptor {
  name?: string;
  uri?: string;
  digest?: Record<string, string>;
  mediaType?: string;
  annotations?: Record<string, unknown>;
}

/** A model's source as a package URL: pkg:huggingface/<org>/<name>@<commit>; local folders have none. */
function sourceUri(m: ModelReport): string | undefined {
  return m.source.type === 'hub' ? `pkg:huggingface/${m.source.repo}@${m.source.commit}` : undefined;
}

function dependencies(m: ModelReport): ResourceDescriptor[] {
  const uri = sourceUri(m);
  const model: ResourceDescriptor = {
    name: m.id,
    ...(uri ? { uri } : {}),
    // A Hub commit is a git commit; a local folder's "commit" is the digest of its locked file list.
    digest: m.source.type === 'hub' ? { gitCommit: m.source.commit } : { sha256: m.source.commit },
    annotations: { source: m.source.type, repo: m.source.repo, revision: m.source.revision },
  };
  const files = m.source.files.map((f) => ({ name: `${m.id}/${f.path}`, ...(uri ? { uri: `${uri}#${f.path}` } : {}), digest: { sha256: f.sha256 }, annotations: { size: f.size } }));
  const data = m.inputs.map((i) => ({ name: `${m.id} ${i.role} ${i.kind}`, digest: { sha256: i.sha256 }, annotations: { role: i.role, kind: i.kind } }));
  return [model, ...files, ...data];
}

export interface ProvenanceSubject {
  /** Repository the image was pushed to (host/name). */
  name: string;
  /** Manifest digest, sha256:<hex>. */
  digest: string;
}

export function provenanceStatement(report: BakeReport, subject: ProvenanceSubject): Record<string, unknown> {
  const r = withoutTimings(report);
  return {
    _type: IN_TOTO_STATEMENT,
    subject: [{ name: subject.name, digest: { sha256: subject.digest.replace(/^sha256:/, '') } }],
    predicateType: SLSA_PROVENANCE,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: {
          recipe: r.recipe.name,
          image: r.recipe.image,
          targets: r.targets.map((t) => ({ name: t.name, server: t.server, models: t.models, tags: t.tags })),
          models: r.models.map((m) => ({
            id: m.id,
            source: `${m.source.repo}@${m.source.commit}`,
            format: m.format,
            variant: m.variant,
            quantization: m.quantization.params ?? null,
            gates: m.verification.gates.map((g) => ({ gate: g.gate, metric: g.metric, comparison: g.comparison, threshold: g.threshold })),
          })),
        },
        internalParameters: { toolchain: r.bake.toolchain },
        resolvedDependencies: r.models.flatMap(dependencies),
      },
      runDetails: {
        builder: { id: `https://github.com/bake-dev/bake@${r.bake.version}`, version: { bake: r.bake.version, ...r.bake.toolchain } },
        metadata: {},
        byproducts: [
          {
            name: 'bake report',
            mediaType: REPORT_MEDIA_TYPE,
            digest: { sha256: sha256Bytes(canonicalJson(r)) },
            annotations: {
              passed: r.passed,
              gates: Object.fromEntries(r.models.map((m) => [m.id, { status: m.verification.status, results: m.verification.gates.map((g) => ({ metric: g.metric, value: g.value ?? null, comparison: g.comparison, threshold: g.threshold, passed: g.passed })) }])),
            },
          },
          ...r.models.flatMap((m) => m.steps.filter((s) => s.step === 'package' && s.artifact).map((s) => ({ name: `${m.id} ${s.step}`, digest: { sha256: s.artifact!.replace(/^sha256:/, '') }, annotations: { step: s.step } }))),
        ],
      },
    },
  };
}

/** The report JSON's media type (artifact layer and artifactType). */
export const REPORT_MEDIA_TYPE = 'application/vnd.dev.bake.report.v1+json';
