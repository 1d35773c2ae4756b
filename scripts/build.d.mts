/** The folder of a build of the current sources (`<root>/build/<fingerprint>`), compiled now when there is none. */
export declare function ensureBuild(root?: string): string;
