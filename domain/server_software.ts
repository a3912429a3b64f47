/** The name and version this server reports to clients and peers. */
export const SERVER_SOFTWARE = { name: "Tessera", version: "0.1.0" } as const;
