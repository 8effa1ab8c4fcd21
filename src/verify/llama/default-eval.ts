// The eval text used when a recipe names none: plain English prose written for bake (no licence strings
// attached), long enough for a few perplexity chunks with any common tokenizer.
export const DEFAULT_EVAL_TEXT = `The harbour town woke slowly on winter mornings. Before the sun cleared the hills, the baker had already lit
his ovens, and the smell of warm bread drifted down the narrow streets toward the water. Fishermen checked
their nets by lantern light, talking quietly about the weather and the price of fuel, while gulls waited on
the mooring posts for anything that might fall from a crate.

Mara ran the small library at the end of the quay. It had been a customs house once, and the old counting
room still had its iron safe, which now held nothing more valuable than the key to the reading room and a
tin of biscuits. Every morning she opened the shutters, swept the sand from the doorway and wrote the
date on a slate by the entrance. Children came after school to read about ships and distant cities;
older visitors came to argue about the tides, the council, and whether the new bridge would ever be built.

One grey afternoon a stranger arrived with a suitcase full of maps. He said he was surveying the coast for
a company that wanted to lay a cable under the sea, and he asked whether the library kept records of old
storms. Mara found him a shelf of logbooks written by the harbour masters over a hundred years: wind
directions, wave heights, ships delayed, ships lost. He read them for three days, making careful notes in
a notebook with a green cover, and on the fourth day he thanked her and left on the early train.

Weeks later a parcel came addressed to the library. Inside was a printed report, a chart of the sea floor
and a short letter. The logbooks, the stranger wrote, had shown that the calm bay to the north was calm
only in summer; in winter the currents there turned and scoured the bottom. The cable would follow the
rocky shelf instead, where it would be safe for fifty years. He hoped the town would keep the logbooks
dry, because nobody else had written down what the sea had done, year after year, so patiently.

Mara put the report on the shelf beside the logbooks and added a line to the slate by the door: records
are letters to strangers we will never meet. The children asked what it meant. She told them to write
something down every day, the weather, a ship, a word they had learned, and to wait and see who would
need it. Most of them forgot by spring. A few did not, and years later one of them became the harbour
master, and kept the log as carefully as anyone ever had.

In the evenings, when the library closed, Mara walked along the sea wall to the lighthouse and back. She
counted the boats at anchor, noticed which windows were lit, and listened to the bell buoy rocking in the
swell. It was a small town and a small life, people said, but she knew how much of the world passed
through it: the weather from the west, the cargo from the south, the letters and the strangers, and the
long patient record of all of it, kept on paper, on a shelf, in a room that had once counted money and
now counted days.
`;
