// What the pipeline tells its caller while it runs; the CLI renders these (bars on a TTY, lines or JSON otherwise).

export type StepName = 'lock' | 'fetch' | 'convert' | 'quantize' | 'verify' | 'package' | 'bake' | 'push';

export type PipelineEvent =
  | { type: 'step'; step: StepName; model?: string; status: 'cached' | 'running' | 'done'; key?: string; artifact?: string; ms?: number }
  | { type: 'progress'; step: StepName; model?: string; label: string; bytes: number; total?: number }
  | { type: 'log'; step?: StepName; model?: string; message: string; level?: 'info' | 'warning' };

export type EventSink = (e: PipelineEvent) => void;
