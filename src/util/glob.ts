// Recipe `files:` patterns. `*` does not cross `/` unless the pattern has a `/` or `**` (gitignore-like:
// "*.json" matches config.json and onnx/x.json alike, as huggingface_hub's allow_patterns do).
import picomatch from 'picomatch';

export function fileMatcher(patterns: string[]): (path: string) => boolean {
  const matchers = patterns.map((p) => picomatch(p, { dot: false, basename: !p.includes('/') }));
  return (path) => matchers.some((m) => m(path));
}
