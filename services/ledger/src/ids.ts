export { isUuid, isUuidV7, uuidv7 } from "@taskmesh/kit";
