// The fixed workload `bake bench` sends: the same prompts (chat) or inputs (embeddings), in the same
// order, at a fixed concurrency, so two settings are compared on identical work.

/** Chat prompts of varied length: short questions to a long document (prompt processing shows in TTFT). */
export const CHAT_PROMPTS: readonly string[] = [
  'What is the capital of Australia?',
  'Write a haiku about a quiet harbour at dawn.',
  'Explain in two sentences why the sky looks blue during the day and red at sunset.',
  'List three ways to keep bread fresh for longer, and say which one works best for sourdough.',
  'Summarize the following notes for a team update: the release moved to Thursday because the database migration took longer than planned; the new search page is finished and tested; two bugs in the billing export are still open and one of them affects customers on the yearly plan; the support team asked for a short guide on the new refund flow before the release.',
  'Here is a customer message. Reply politely and propose a next step. Message: I ordered a pair of running shoes three weeks ago and the tracking page has shown the same status for ten days. I wrote twice to your support address and nobody answered. I need the shoes for a race in two weeks. If they cannot arrive in time I would like a refund, but I would prefer the shoes. Please tell me what you can do.',
  'Translate to French: The train to the airport leaves every fifteen minutes from platform four.',
  'You are reviewing a pull request. The change adds a cache in front of the user service: reads go to the cache first and fall back to the service, writes go to the service and then delete the cache entry. The cache has a time to live of ten minutes. Point out the race conditions this design can have and suggest one fix for each, keeping the answer short.',
];

/** Embedding inputs: sentences and a paragraph. */
export const EMBEDDING_INPUTS: readonly string[] = [
  'How do I reset my password if I no longer have access to my email?',
  'The meeting has been moved to Thursday at 3 pm in room 204.',
  'Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen.',
  'Our new laptop has 16 GB of memory and a 512 GB solid state drive.',
  'The river flooded the valley, forcing hundreds of families to leave their homes, and the regional government opened three shelters in the schools of the nearby towns while engineers inspected the dam.',
  'Which programming language is best for writing a web server?',
  'A good night of sleep improves memory and concentration.',
  'Interest rates are expected to stay unchanged until next year.',
];

export interface Workload {
  kind: 'chat' | 'embedding';
  /** Requests per setting (the prompts cycled in order). */
  requests: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Tokens generated per chat request (generation goes on past end-of-text, so every request generates as many). */
  maxTokens: number;
}

export function workload(kind: Workload['kind'], o: Partial<Omit<Workload, 'kind'>> = {}): Workload {
  return { kind, requests: o.requests ?? 16, concurrency: o.concurrency ?? 2, maxTokens: o.maxTokens ?? 32 };
}
