export * from './network.ts';
export * from './sandbox.ts';
export { checkName, checkIfname, parseKeyValues } from './names.ts';
