// The report and provenance of a pushed image, attached to it in the registry as OCI 1.1 artifacts whose
// subject is the image manifest: one artifact with report.json + report.html, one with the in-toto
// statement. Both are built from the reproducible report of that image, so pushing the same build
// again gives the same artifact digests (and adds nothing to the referrers list).
import { artifactManifest } from '../image/oci/artifact.js';
import { epochToRfc3339 } from '../image/oci/image.js';
import type { Descriptor } from '../image/oci/types.js';
import type { RegistryOptions } from '../image/registry/client.js';
import { pushReferrer, type ReferrerPush } from '../image/registry/referrers.js';
import { parseRef } from '../image/registry/ref.js';
import { canonicalJson, prettyJson } from '../util/json.js';
import { renderHtml } from './html.js';
import { GATE_ANNOTATION, reportForTarget, withoutTimings, type BakeReport } from './model.js';
import { provenanceStatement, REPORT_MEDIA_TYPE, SLSA_PROVENANCE } from './provenance.js';
import { validateReport } from './schema.js';

export const PROVENANCE_MEDIA_TYPE = 'application/vnd.in-toto+json';
export { REPORT_MEDIA_TYPE };

export interface AttachInput {
  /** The build's report; the part about `target` is attached. */
  report: BakeReport;
  target: string;
  /** Where the image was pushed: host/name (a tag, if any, is ignored). */
  repository: string;
  /** The image manifest's descriptor. */
  subject: Descriptor;
  /** SOURCE_DATE_EPOCH: the artifacts' created annotation. */
  epoch: number;
  registry?: RegistryOptions;
  onEvent?: (message: string) => void;
}

/** The two artifact manifests (not pushed): for tests and for `attachToImage`. */
export async function imageArtifacts(input: Omit<AttachInput, 'registry' | 'onEvent'>) {
  const r = withoutTimings(reportForTarget(input.report, input.target));
  await validateReport(r);
  const ref = parseRef(input.repository);
  const name = `${ref.host}/${ref.repository}`;
  const common = {
    'org.opencontainers.image.created': epochToRfc3339(input.epoch),
    'dev.bake.recipe': r.recipe.name,
    'dev.bake.target': input.target,
  };
  const gates = r.targets[0]?.gates?.[GATE_ANNOTATION];
  const report = artifactManifest({
    artifactType: REPORT_MEDIA_TYPE,
    subject: input.subject,
    files: [
      { mediaType: REPORT_MEDIA_TYPE, title: 'report.json', bytes: Buffer.from(prettyJson(r)) },
      { mediaType: 'text/html', title: 'report.html', bytes: Buffer.from(await renderHtml(r)) },
    ],
    annotations: { ...common, ...(gates ? { [GATE_ANNOTATION]: gates } : {}) },
  });
  const provenance = artifactManifest({
    artifactType: PROVENANCE_MEDIA_TYPE,
    subject: input.subject,
    files: [{ mediaType: PROVENANCE_MEDIA_TYPE, title: 'provenance.intoto.json', bytes: Buffer.from(canonicalJson(provenanceStatement(r, { name, digest: input.subject.digest }))) }],
    annotations: { ...common, 'in-toto.io/predicate-type': SLSA_PROVENANCE },
  });
  return { name, report, provenance };
}

export async function attachToImage(input: AttachInput): Promise<ReferrerPush[]> {
  const { name, report, provenance } = await imageArtifacts(input);
  const out: ReferrerPush[] = [];
  for (const a of [report, provenance]) {
    const pushed = await pushReferrer(name, a, input.registry);
    input.onEvent?.(`referrer ${a.artifactType} ${pushed.digest} (${pushed.via})`);
    out.push(pushed);
  }
  return out;
}
