// Image references: host[:port]/repository[:tag][@sha256:...]. There is no default registry: every
// reference names its host, so nothing is ever sent somewhere the user did not say.
import { InputError } from '../../util/errors.js';

export interface ImageRef {
  host: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function parseRef(ref: string): ImageRef {
  const bad = (why: string): never => {
    throw new InputError(`bad image reference "${ref}": ${why}`, { field: 'image', expected: 'host[:port]/repository[:tag][@sha256:<hex>], e.g. 127.0.0.1:5000/bake/e5:1.0.0' });
  };
  let rest = ref.replace(/^docker:\/\//, '');
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) bad('the digest must be sha256:<64 hex>');
  }
  const slash = rest.indexOf('/');
  if (slash < 0) bad('it has no registry host');
  const host = rest.slice(0, slash);
  if (!(host.includes('.') || host.includes(':') || host === 'localhost')) bad(`"${host}" does not look like a registry host (no dot, port or localhost)`);
  let path = rest.slice(slash + 1);
  let tag: string | undefined;
  const colon = path.lastIndexOf(':');
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) bad(`"${tag}" is not a valid tag`);
  }
  if (!path || !path.split('/').every((c) => REPO_COMPONENT.test(c))) bad('the repository must be lowercase path components');
  return { host, repository: path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

export function formatRef(r: ImageRef): string {
  return `${r.host}/${r.repository}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** Loopback registries speak plain HTTP by default, as Docker assumes for 127.0.0.0/8. */
export function isLoopbackHost(host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return name === 'localhost' || name === '::1' || /^127\./.test(name);
}
